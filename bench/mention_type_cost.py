"""``python -m bench.mention_type_cost``: what ``MENTIONS.type`` costs the loader, A/B in one process.

One throw-away Neo4j; the load benchmark's synthetic rows (10k posts, 50k mentions, 100k triples, batch 1,000,
2 writers); a warm-up load, then ``--repeats`` loads of each variant into an emptied graph, the order
alternating: the mention statement as shipped, and with ``m.type = $entity_type, `` removed from it
(``kg_loader.cypher.upsert_mentions`` wrapped in this process only). Prints the medians per stage and the
server's CPU per load. Results: ``bench/results/load_ideas.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.load_benchmark import batched_load, clear, server_cpu_s, synthetic
from bench.machine import describe
from kg_loader import cypher
from kg_loader.writer import GraphWriter, connect
from mmkg.settings import Neo4jSettings

SHIPPED = cypher.upsert_mentions


def without_type(entity_type: str, broader: tuple[str, ...] = ()) -> str:
    query = SHIPPED(entity_type, broader)
    if "m.type = $entity_type, " not in query:
        raise RuntimeError("the mention statement no longer sets m.type as this benchmark expects")
    return query.replace("m.type = $entity_type, ", "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mention_type_cost", description=__doc__)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--bolt-port", type=int, default=27787)
    args = ap.parse_args(argv)
    from neo4j_server import manager as server

    home = Path(tempfile.mkdtemp(prefix="mmkg-bench-mention-type-"))
    settings = Neo4jSettings(f"bolt://127.0.0.1:{args.bolt_port}", "neo4j", "mmkg-bench", "neo4j", args.bolt_port,
                             args.bolt_port - 3, home)  # fmt: skip
    print("machine:", describe())
    pid = server.start(settings)
    results: dict[str, list[dict]] = {"with m.type (shipped)": [], "without": []}
    try:
        with connect(settings) as driver:
            posts, mentions, triples = synthetic(50_000, 100_000, 10_000)
            writer = GraphWriter(driver, batch_size=1000, writers=2)
            writer.ensure_schema()
            clear(driver)
            batched_load(writer, posts, mentions, triples)  # warm-up
            names = list(results)
            for rep in range(args.repeats):
                for name in names if rep % 2 == 0 else names[::-1]:
                    cypher.upsert_mentions = SHIPPED if name == names[0] else without_type
                    clear(driver)
                    cpu = server_cpu_s(pid)
                    row = batched_load(writer, posts, mentions, triples)
                    row["server_cpu_s"] = server_cpu_s(pid) - cpu
                    results[name].append(row)
    finally:
        cypher.upsert_mentions = SHIPPED
        server.stop(settings)
    for name, rows in results.items():
        med = {k: round(statistics.median(r[k] for r in rows), 3)
               for k in ("posts_s", "entities_s", "triples_s", "server_cpu_s")}  # fmt: skip
        print(f"{name:<22} medians {med}; entities_s per repeat {[round(r['entities_s'], 2) for r in rows]}")
    print("load average after:", os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
