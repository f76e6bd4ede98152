"""Airflow on CeleryExecutor for real (`mmkg cluster`): PostgreSQL, Redis, scheduler, API server and two
Celery workers on 127.0.0.1. A 3-day backfill through them builds the graph a LocalExecutor backfill builds.

Needs `bin/setup --cluster` (PostgreSQL and Redis packages, the cluster extra). `bin/test` runs it with
MMKG_REQUIRE_CLUSTER=1, so there a missing piece fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from kg_loader.checksum import duplicates, graph_checksum
from tests.conftest import graph_snapshot
from tests.test_faults import RUN_IDS

pytestmark = [pytest.mark.neo4j, pytest.mark.airflow, pytest.mark.cluster]

DAG = "mmkg_ingest"
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")
GPU_TASKS = ("type_and_relate", "agree_types")  # the tasks in the gpu pool, on the gpu queue


def _missing() -> list[str]:
    from app.cluster import pg_bindir

    missing = []
    try:
        pg_bindir()
    except RuntimeError:
        missing.append("PostgreSQL server binaries")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    for module in ("airflow.providers.celery", "redis", "psycopg2", "asyncpg"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    return missing


@pytest.fixture(scope="module", autouse=True)
def cluster_installed():
    if missing := _missing():
        reason = f"the cluster pieces are not installed ({', '.join(missing)}): run bin/setup --cluster"
        if os.environ.get("MMKG_REQUIRE_CLUSTER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _backfill(af, driver) -> tuple[str, float, list[dict]]:
    """Unpause, backfill DAYS, wait: (graph checksum without run ids, wall seconds from `backfill create` to
    the last run done, runs). A backfill runs its intervals at once (its own max_active_runs, 10, not the
    DAG's 1) and the gpu pool lets their GPU tasks through in whatever order they ask: which run writes a
    shared entity first (its first_run_id), or last (run_id), differs from one backfill to the next, on
    either executor. Like tests/test_faults.py for concurrent runs, the checksum leaves the run ids out."""
    af.wait_for_dag(DAG)
    af.cli("dags", "unpause", DAG)
    started = time.monotonic()
    af.backfill(DAG, DAYS[0], DAYS[-1])
    runs = af.wait_for_runs(DAG, set(DAYS))
    wall = time.monotonic() - started
    assert Counter(r["state"] for r in runs) == Counter({"success": len(DAYS)}), runs
    stamped, _, _ = driver.execute_query(
        "CALL () { MATCH (n) RETURN [n.run_id, n.first_run_id] AS ids UNION ALL MATCH ()-[r]->() RETURN [r.run_id, r.first_run_id] AS ids } "
        "UNWIND ids AS id WITH id WHERE id IS NOT NULL RETURN collect(DISTINCT id) AS ids")
    assert set(stamped[0]["ids"]) <= {r["run_id"] for r in runs}, stamped  # what is left out: these runs' ids only
    return graph_checksum(driver, ignore=RUN_IDS), wall, runs


def _without_run_ids(snapshot: tuple[list, list]) -> tuple[list, list]:
    def strip(item: str) -> str:
        data = json.loads(item)
        data["props"] = {k: v for k, v in data["props"].items() if k not in RUN_IDS}
        return json.dumps(data, sort_keys=True)

    return [strip(x) for x in snapshot[0]], [strip(x) for x in snapshot[1]]


def _task_instances(af, runs: list[dict]) -> list[dict]:
    out = []
    for run in runs:
        proc = af.cli("tasks", "states-for-dag-run", DAG, run["run_id"], "-o", "json")
        out += json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith("[")))
    return out


@pytest.mark.timeout(2400)  # two 3-day backfills and a cluster start: ~8 min on the 2-core machine
def test_a_celery_backfill_builds_the_local_executor_graph(neo4j_driver, neo4j_server, tmp_path):
    import psutil

    from app.cluster import Cluster
    from app.local_airflow import local_airflow, session_members

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    s = neo4j_server.settings
    conn = json.dumps({"conn_type": "neo4j", "host": "127.0.0.1", "port": s.bolt_port, "login": s.user, "password": s.password})

    # 1. LocalExecutor on SQLite (the embedded default, `mmkg airflow start`).
    with local_airflow(tmp_path / "local", {"AIRFLOW_CONN_NEO4J_DEFAULT": conn,
                                            "MMKG_STAGING_DIR": str(tmp_path / "staging-local")}) as af:
        local_sum, local_s, _ = _backfill(af, neo4j_driver)
    local_graph = graph_snapshot(neo4j_driver)
    assert local_graph[0] and local_graph[1]
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")

    # 2. CeleryExecutor: PostgreSQL, Redis, two workers (`mmkg cluster start`), same Neo4j, emptied.
    cluster = Cluster(tmp_path / "cluster", env={"AIRFLOW_CONN_NEO4J_DEFAULT": conn,
                                                 "MMKG_STAGING_DIR": str(tmp_path / "staging-celery")})
    cluster.start()
    sid = cluster.proc.pid
    try:
        celery_sum, celery_s, runs = _backfill(cluster, neo4j_driver)
        stats = cluster.worker_stats()
        tis = _task_instances(cluster, runs)
        members = session_members(sid)
        pids = {p.pid for p in members}
        # The generated passwords are in 0600 files only: on no command line, in no environment
        # (workers, task processes and servers included).
        from app.cluster import PASSWORDS, password

        secret_values = [password(cluster.cluster_home, name) for name in PASSWORDS]
        exposed = []
        for proc in members:
            try:
                seen = " ".join(proc.cmdline()) + " " + " ".join(f"{k}={v}" for k, v in proc.environ().items())
            except psutil.Error:  # exited meanwhile
                continue
            exposed += [proc.pid for value in secret_values if value in seen]
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in pids}
    finally:
        left = cluster.stop()
    assert left == [] and session_members(sid) == []  # one session, stopped whole (servers included)
    assert len(pids) >= 10 and exposed == [], exposed

    # Every server of the cluster listened on loopback only, on its configured port.
    assert listening == {("127.0.0.1", port) for port in cluster.ports.values()}, (listening, cluster.ports)
    # The GPU task ran on the gpu worker only (it listens on queue `gpu` alone), the rest on the default one.
    gpu_runs = [ti for ti in tis if ti["task_id"] in GPU_TASKS and ti["state"] == "success"]
    assert len(gpu_runs) >= len(GPU_TASKS) * len(DAYS), tis
    by_worker = {name.split("@")[0]: sum(total.values()) for name, total in stats.items()}
    assert by_worker.get("gpu") == len(gpu_runs), (stats, gpu_runs)
    assert by_worker.get("default", 0) >= len([ti for ti in tis if ti["task_id"] not in GPU_TASKS and ti["state"] == "success"]), stats
    # The gpu pool (1 slot) bounds the GPU task: no two of them overlapped in time.
    spans = sorted((ti["start_date"], ti["end_date"]) for ti in gpu_runs)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans

    # The same graph: every node and relationship with every property but the run ids.
    if celery_sum != local_sum:
        celery_graph = _without_run_ids(graph_snapshot(neo4j_driver))
        local_graph = _without_run_ids(local_graph)
        only_local = [x for x in local_graph[0] + local_graph[1] if x not in set(celery_graph[0] + celery_graph[1])]
        only_celery = [x for x in celery_graph[0] + celery_graph[1] if x not in set(local_graph[0] + local_graph[1])]
        pytest.fail(f"graphs differ: {len(only_local)} items only after LocalExecutor, {len(only_celery)} only after "
                    f"Celery; first: {only_local[:3]} / {only_celery[:3]}")
    assert duplicates(neo4j_driver) == {"nodes": 0, "relationships": 0}

    timings = {"local_executor_s": round(local_s, 1), "celery_executor_s": round(celery_s, 1),
               "checksum_without_run_ids": celery_sum, "days": list(DAYS), "worker_tasks": by_worker,
               "gpu_tasks": len(gpu_runs), "load_average_at_start": load_at_start}
    print(f"[cluster backfill] {json.dumps(timings)}")
    if out := os.environ.get("MMKG_CLUSTER_TIMINGS"):
        from bench.machine import describe

        Path(out).write_text(json.dumps({**timings, "machine": describe()}, indent=2) + "\n")
