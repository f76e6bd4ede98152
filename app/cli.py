"""The ``mmkg`` command. Each subcommand imports its implementation lazily, so ``mmkg --help``
is instant and no subcommand pays for another's imports (torch, airflow, neo4j)."""

from __future__ import annotations

import argparse
import sys


def _neo4j(args: argparse.Namespace) -> int:
    from neo4j_server import manager as server

    return server.cli(args.action)


def _bench_load(args: argparse.Namespace) -> int:
    from mmkg.settings import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT))  # bench/ lives in the repository, not in the installed packages
    from bench import load_benchmark

    return load_benchmark.main(args.rest)


def _airflow(args: argparse.Namespace) -> int:
    if args.action == "init":
        from app import airflow_init

        for line in airflow_init.init(gpu_slots=args.gpu_slots):
            print(f"[airflow init] {line}")
        return 0
    from app import local_airflow

    return local_airflow.cli(args.action)


def _cluster(args: argparse.Namespace) -> int:
    from app import cluster

    return cluster.cli(args.action, args.rest)


def _demo(args: argparse.Namespace) -> int:
    from app import demo

    return demo.run(args.days or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmkg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    neo = sub.add_parser("neo4j", help="run the embedded local Neo4j 5.26 server")
    neo.add_argument("action", choices=["start", "stop", "status", "build"])
    neo.set_defaults(func=_neo4j)

    af = sub.add_parser(
        "airflow",
        help="the project's Airflow: init (database, secrets, gpu pool; idempotent), "
        "start/stop/status (a local Airflow as one process group, on 127.0.0.1)",
    )
    af.add_argument("action", choices=["init", "start", "stop", "status"])
    af.add_argument("--gpu-slots", type=int, default=1, help="slots of a newly created gpu pool (init)")
    af.set_defaults(func=_airflow)

    cl = sub.add_parser(
        "cluster",
        help="Airflow on CeleryExecutor on 127.0.0.1 (PostgreSQL, Redis, two Celery workers) as one process group: "
        "start/stop/status; `mmkg cluster airflow ARGS` runs the airflow CLI against it (needs bin/setup --cluster)",
    )
    cl.add_argument("action", choices=["start", "stop", "status", "airflow"])
    cl.add_argument("rest", nargs=argparse.REMAINDER, help="airflow CLI arguments (with `airflow`)")
    cl.set_defaults(func=_cluster)

    demo = sub.add_parser("demo", help="run mmkg_ingest over the sample days and query the graph")
    demo.add_argument("days", nargs="*", help="YYYY-MM-DD partitions (default: all in the landing dir)")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="benchmarks (see bench/)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    load = bench_sub.add_parser("load", help="batched vs naive Neo4j loader")
    load.add_argument("rest", nargs=argparse.REMAINDER)
    load.set_defaults(func=_bench_load)

    from app.relation_review_cli import add_relations_parser  # argparse only; the work is imported lazily
    from app.resolution_cli import add_entities_parser

    add_entities_parser(sub)
    add_relations_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
