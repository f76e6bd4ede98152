"""``python -m bench.relationship_floor``: what this machine's Neo4j needs to write relationships at all.

Issue 13 asks the online writer for 50k relationships/s in its triple stage. This measures the floor under
any online writer on the machine at hand, in one process against one throw-away server: the load
benchmark's synthetic rows (10k posts, 50k entities, 100k triples, batch 1,000), posts and entities loaded
once by mmkg's writer, then per repeat (the relationships deleted before each, the order alternating):

- ``mmkg``: ``GraphWriter.upsert_relations``, the shipped triple stage (MERGE on the key, 9 properties,
  evidence per post, 2 writers, endpoints by element id);
- ``create, properties``: the same relationships and properties, but ``CREATE`` (no MERGE: not idempotent),
  endpoints by element id, one statement per relation type;
- ``create, bare``: ``CREATE (h)-[:TYPE]->(t)`` and nothing else: the least a relationship costs.

The two CREATE variants run with 1 writer and with 2 (threads, each its own session; a batch that loses a
deadlock is retried by the driver, and the retries are counted). Prints medians of relationships per second.
Results: ``bench/results/relationship_floor.txt``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench.load_benchmark import batched_load, clear, server_cpu_s, synthetic
from bench.machine import describe
from kg_loader import cypher
from kg_loader.writer import GraphWriter, connect
from mmkg.settings import Neo4jSettings

DELETE_RELATIONS = "MATCH (:Entity)-[r]->(:Entity) CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS"
PROPERTIES = ("relation", "post_ids", "scores", "evidence_count", "max_score", "first_run_id", "model_version",
              "label_set_id", "run_id")


def create_statement(relation: str, with_properties: bool) -> str:
    props = (" {relation: row[2], post_ids: [row[3]], scores: [row[4]], evidence_count: 1, max_score: row[4], "
             "first_run_id: row[5], model_version: row[6], label_set_id: row[7], run_id: row[5]}")
    return (f"UNWIND $rows AS row MATCH (h) WHERE elementId(h) = row[0] MATCH (t) WHERE elementId(t) = row[1] "
            f"CREATE (h)-[:{cypher.relationship_type(relation)}{props if with_properties else ''}]->(t)")


def create_batches(triples, element_ids: dict[str, str], batch: int) -> list[tuple[str, list[list]]]:
    """(relation, rows) batches of at most ``batch`` rows, one relation type each."""
    by_relation: dict[str, list[list]] = defaultdict(list)
    for r in triples:
        by_relation[r.relation].append([element_ids[r.head_id], element_ids[r.tail_id], r.relation, r.post_id,
                                        r.score, r.run_id, r.model_version, r.label_set_id])
    return [(rel, rows[i:i + batch]) for rel, rows in sorted(by_relation.items()) for i in range(0, len(rows), batch)]


def create_load(driver, batches, with_properties: bool, writers: int) -> dict:
    """Write ``batches`` with ``writers`` threads; seconds and the driver's retries of deadlocked batches."""
    attempts = [0]
    lock = threading.Lock()

    def run(share):
        with driver.session() as session:
            for relation, rows in share:
                def work(tx, relation=relation, rows=rows):
                    with lock:
                        attempts[0] += 1
                    tx.run(create_statement(relation, with_properties), rows=rows).consume()
                session.execute_write(work)

    shares = [batches[w::writers] for w in range(writers)]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"s": time.perf_counter() - t0, "retries": attempts[0] - len(batches)}


VARIANTS = ("mmkg", "create, properties, 2 writers", "create, properties, 1 writer", "create, bare, 2 writers",
            "create, bare, 1 writer")


def measure(settings: Neo4jSettings, entities: int, triples_n: int, posts_n: int, repeats: int) -> dict[str, list[dict]]:
    """Start a throw-away server at ``settings``, load the synthetic posts and entities, and time each variant's
    triple stage ``repeats`` times (after a warm-up each); per variant, a row per repeat."""
    from neo4j_server import manager as server

    pid = server.start(settings)
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    try:
        with connect(settings) as driver:
            posts, mentions, triples = synthetic(entities, triples_n, posts_n)
            writer = GraphWriter(driver, batch_size=1000, writers=2)
            writer.ensure_schema()
            clear(driver)
            batched_load(writer, posts, mentions, triples)  # warm-up of mmkg; the posts and entities stay
            element_ids = dict(driver.execute_query("MATCH (e:Entity) RETURN e.id AS id, elementId(e) AS eid",
                                                    result_transformer_=lambda r: [(x["id"], x["eid"]) for x in r]))
            batches = create_batches(triples, element_ids, 1000)
            for name in VARIANTS[1:]:  # warm-up of each statement
                with driver.session() as s:
                    s.run(DELETE_RELATIONS).consume()
                create_load(driver, batches, "properties" in name, 2 if "2 writers" in name else 1)
            for rep in range(repeats):
                for name in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
                    with driver.session() as s:  # CALL ... IN TRANSACTIONS needs an auto-commit transaction
                        s.run(DELETE_RELATIONS).consume()
                    cpu = server_cpu_s(pid)
                    if name == "mmkg":
                        t0 = time.perf_counter()
                        report = writer.upsert_relations(triples)
                        row = {"s": time.perf_counter() - t0, "retries": report.deadlock_retries}
                    else:
                        row = create_load(driver, batches, "properties" in name, 2 if "2 writers" in name else 1)
                    row["server_cpu_s"] = server_cpu_s(pid) - cpu
                    row["relationships"] = driver.execute_query(
                        "MATCH (:Entity)-[r]->(:Entity) RETURN count(r) AS n", result_transformer_=lambda r: r.single()["n"])
                    results[name].append(row)
    finally:
        server.stop(settings)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.relationship_floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--entities", type=int, default=50_000)
    ap.add_argument("--triples", type=int, default=100_000)
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--bolt-port", type=int, default=27887)
    ap.add_argument("--http-port", type=int, default=27884)
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="mmkg-bench-floor-"))
    settings = Neo4jSettings(f"bolt://127.0.0.1:{args.bolt_port}", "neo4j", "mmkg-bench", "neo4j", args.bolt_port,
                             args.http_port, home)  # fmt: skip
    print("machine:", describe())
    results = measure(settings, args.entities, args.triples, args.posts, args.repeats)
    print(f"{args.triples:,} triples, batches of 1,000; medians of {args.repeats} repeats (order alternating)")
    for name, rows in results.items():
        s = statistics.median(r["s"] for r in rows)
        n = statistics.median(r["relationships"] for r in rows)
        cpu = statistics.median(r["server_cpu_s"] for r in rows)
        print(f"  {name:<32} {s:6.2f} s  {n / s:>9,.0f} relationships/s  server CPU {cpu:5.2f} s  "
              f"retries {[r['retries'] for r in rows]}  written {int(n):,}")
    print("load average after:", os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
