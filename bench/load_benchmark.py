"""Neo4j loader benchmark: the batched loader (UNWIND + MERGE, one transaction per batch) versus
a naive loader that sends one MERGE per transaction, on the same synthetic graph; plus the cost
of an idempotent second load, and the query-speed reason for typed relationship types.

Runs against its own throw-away Neo4j 5.26 server (127.0.0.1:27687, temporary data) so it can
never touch a user's graph. Usage:

    python -m bench.load_benchmark [--entities 50000] [--triples 100000] [--repeats 5] [--writers 2]

Not a test. Prints a table and, on its last line, the batched/naive speed ratio; writes
bench/results/load_benchmark.json (``--out``). The shard-sized run in bench/results/ is
``--entities 600 --triples 600 --posts 200 --repeats 9 --out bench/results/load_benchmark_shard.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.machine import describe
from kg_loader import cypher
from mmkg.identity import entity_id
from kg_loader.records import MentionRow, PostRow, RelationRow
from kg_loader.writer import DEFAULT_WRITERS, GraphWriter, connect, mention_statement, relation_statement
from mmkg.settings import Neo4jSettings

ENTITY_TYPES = ("Person", "Organization", "Location", "Event", "Product")
RELATIONS = ("member_of", "located_in", "present_in", "created_by", "peer", "place_of_residence")
RESULTS = Path(__file__).resolve().parent / "results" / "load_benchmark.json"


def synthetic(n_entities: int, n_triples: int, n_posts: int, seed: int = 0):
    rng = random.Random(seed)
    posts = [PostRow(f"post-{i}", f"synthetic post {i}", "2026-11-01T00:00:00+00:00", run_id="bench") for i in range(n_posts)]
    mentions, ids = [], []
    for i in range(n_entities):
        etype = ENTITY_TYPES[i % len(ENTITY_TYPES)]
        name = f"entity {i}"
        eid = entity_id(name, etype)
        ids.append(eid)
        mentions.append(MentionRow(f"post-{i % n_posts}", eid, etype, name, name, i, i + len(name), 0.9, "bench/v1", "bench", "bench"))
    triples = []
    for i in range(n_triples):
        h, t = rng.sample(range(n_entities), 2)
        triples.append(RelationRow(ids[h], ids[t], RELATIONS[i % len(RELATIONS)], f"post-{i % n_posts}", 0.5 + (i % 50) / 100, "bench/v1", "bench", "bench"))
    return posts, mentions, triples


def clear(driver) -> None:
    with driver.session() as session:  # CALL ... IN TRANSACTIONS needs an auto-commit transaction
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()


def batched_load(writer: GraphWriter, posts, mentions, triples) -> dict:
    t0 = time.perf_counter()
    writer.upsert_posts(posts)
    t1 = time.perf_counter()
    r_m = writer.upsert_mentions(mentions)
    t2 = time.perf_counter()
    r_t = writer.upsert_relations(triples)
    t3 = time.perf_counter()
    return {"posts_s": t1 - t0, "entities_s": t2 - t1, "triples_s": t3 - t2, "created": r_m.created + r_t.created, "deadlocks": r_m.deadlock_retries + r_t.deadlock_retries}


def naive_load(driver, posts, mentions, triples) -> dict:
    """Same statements and parameters as the batched loader, one row per transaction, a fresh
    session each (what a row-at-a-time writer does)."""

    def one(query, params):
        with driver.session() as session:
            session.execute_write(lambda tx: tx.run(query, params).consume())

    t0 = time.perf_counter()
    for p in posts:
        one(cypher.UPSERT_POSTS, {"rows": [asdict(p)]})
    t1 = time.perf_counter()
    for m in mentions:
        one(*mention_statement(m))
    t2 = time.perf_counter()
    for r in triples:
        one(*relation_statement(r))
    t3 = time.perf_counter()
    return {"posts_s": t1 - t0, "entities_s": t2 - t1, "triples_s": t3 - t2}


def query_speed(driver, triples, repeats: int) -> dict:
    """Typed relationship types vs one generic :RELATED {relation} type, same triples, same graph.

    The generic variant gets a relationship property index, its best case.
    """
    driver.execute_query("CREATE INDEX related_relation IF NOT EXISTS FOR ()-[r:RELATED]-() ON (r.relation)")
    driver.execute_query("CALL db.awaitIndexes(300)")
    rows = [{"h": t.head_id, "t": t.tail_id, "rel": t.relation} for t in triples]
    for i in range(0, len(rows), 10000):
        driver.execute_query(
            "UNWIND $rows AS row MATCH (h:Entity {id: row.h}) MATCH (t:Entity {id: row.t}) "
            "MERGE (h)-[:RELATED {relation: row.rel}]->(t)",
            rows=rows[i : i + 10000],
        )
    heads = [t.head_id for t in triples[:2000]]
    queries = {
        "neighbours_typed": ("UNWIND $ids AS id MATCH (:Entity {id: id})-[:MEMBER_OF]->(t) RETURN count(t) AS n", {"ids": heads}),
        "neighbours_generic": ("UNWIND $ids AS id MATCH (:Entity {id: id})-[r:RELATED]->(t) WHERE r.relation = 'member_of' RETURN count(t) AS n", {"ids": heads}),
        "count_typed": ("MATCH ()-[r:MEMBER_OF]->() RETURN count(r) AS n", {}),
        "count_generic": ("MATCH ()-[r:RELATED]->() WHERE r.relation = 'member_of' RETURN count(r) AS n", {}),
        "two_hop_typed": ("MATCH (p:Person)-[:MEMBER_OF]->(o)-[:LOCATED_IN]->(l) RETURN count(*) AS n", {}),
        "two_hop_generic": ("MATCH (p:Person)-[r1:RELATED]->(o)-[r2:RELATED]->(l) WHERE r1.relation = 'member_of' AND r2.relation = 'located_in' RETURN count(*) AS n", {}),
    }
    out = {}
    for name, (q, params) in queries.items():
        driver.execute_query(q, params)  # warm-up (plan cache, page cache)
        times, answer = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            records, _, _ = driver.execute_query(q, params)
            times.append(time.perf_counter() - t0)
            answer = records[0]["n"]
        out[name] = {"median_ms": statistics.median(times) * 1000, "answer": answer}
    for base in ("neighbours", "count", "two_hop"):
        assert out[f"{base}_typed"]["answer"] == out[f"{base}_generic"]["answer"], base
        out[f"{base}_generic_over_typed"] = out[f"{base}_generic"]["median_ms"] / out[f"{base}_typed"]["median_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entities", type=int, default=50_000)
    ap.add_argument("--triples", type=int, default=100_000)
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the batched load (median reported)")
    ap.add_argument("--naive-repeats", type=int, default=1, help="repeats of the naive load (slow)")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--writers", type=int, default=DEFAULT_WRITERS, help="concurrent write transactions")
    ap.add_argument("--compare-writers", type=int, nargs="*", default=[1],
                    help="other writer counts timed in the same repeats (the batched loader as it was: 1)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the JSON results go")
    ap.add_argument("--bolt-port", type=int, default=27687)
    ap.add_argument("--http-port", type=int, default=27474)
    args = ap.parse_args(argv)

    from neo4j_server import manager as server

    home = Path(tempfile.mkdtemp(prefix="mmkg-bench-neo4j-"))
    settings = Neo4jSettings(f"bolt://127.0.0.1:{args.bolt_port}", "neo4j", "mmkg-bench", "neo4j", args.bolt_port, args.http_port, home)
    server.start(settings)
    try:
        with connect(settings) as driver:
            posts, mentions, triples = synthetic(args.entities, args.triples, args.posts)
            writer = GraphWriter(driver, batch_size=args.batch_size, writers=args.writers)
            others = {w: GraphWriter(driver, batch_size=args.batch_size, writers=w) for w in args.compare_writers}
            writer.ensure_schema()
            clear(driver)
            batched_load(writer, posts, mentions, triples)  # warm-up: JIT-compiles the server's query paths
            batched, second, other = [], [], {w: [] for w in others}
            for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits both alike
                clear(driver)
                batched.append(batched_load(writer, posts, mentions, triples))
                second.append(batched_load(writer, posts, mentions, triples))
                assert second[-1]["created"] == 0, "second load created nodes or relationships"
                for w, other_writer in others.items():
                    clear(driver)
                    other[w].append(batched_load(other_writer, posts, mentions, triples))
            naive = []
            for _ in range(args.naive_repeats):
                clear(driver)
                naive.append(naive_load(driver, posts, mentions, triples))
            qs = query_speed(driver, triples, repeats=30)

        def med(runs, key):
            return statistics.median(r[key] for r in runs)

        keys = ("posts_s", "entities_s", "triples_s")

        def medians(runs):
            """Median of each stage and of the whole load (the median of totals, not a sum of medians)."""
            return {k: med(runs, k) for k in keys} | {"total": statistics.median(sum(r[k] for k in keys) for r in runs)}

        b, s2, n = medians(batched), medians(second), medians(naive)
        o = {w: medians(runs) for w, runs in other.items()}
        b_total = b["total"]
        rel_per_s = args.triples / med(batched, "triples_s")
        result = {
            "machine": describe(),
            "neo4j": "5.26 community, embedded launcher, page cache 256m",
            "jvm_options": list(server.JVM_OPTIONS),
            "sizes": {"posts": args.posts, "entities": args.entities, "triples": args.triples, "batch_size": args.batch_size},
            "writers": args.writers,
            "batched_median_s": b,
            "second_load_median_s": s2,
            "other_writers_median_s": o,
            "deadlock_retries": {"batched": [r["deadlocks"] for r in batched], "second": [r["deadlocks"] for r in second]}
            | {f"writers_{w}": [r["deadlocks"] for r in runs] for w, runs in other.items()},
            "naive_median_s": n,
            "repeats": {"batched": args.repeats, "naive": args.naive_repeats},
            "batched_relationships_per_s": rel_per_s,
            "ratio_other_writers_over_batched": {w: m["total"] / b_total for w, m in o.items()},
            "ratio_batched_over_naive": n["total"] / b_total,
            "query_speed": qs,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"machine: {result['machine']['cpu']}, {result['machine']['logical_cpus']} logical CPUs")
        print(f"{'':12}{'posts':>10}{'entities':>10}{'triples':>10}{'total':>10}  (median seconds)")
        rows = ((f"batched x{args.writers}", result["batched_median_s"]), ("second load", result["second_load_median_s"]),
                *((f"batched x{w}", t) for w, t in result["other_writers_median_s"].items()), ("naive", result["naive_median_s"]))
        for name, row in rows:
            print(f"{name:12}" + "".join(f"{row[k]:>10.2f}" for k in (*keys, "total")))
        print(f"deadlock retries per load: {result['deadlock_retries']}")
        print(f"batched triples: {rel_per_s:,.0f} relationships/s")
        for base in ("neighbours", "count", "two_hop"):
            print(f"query {base}: typed {qs[base + '_typed']['median_ms']:.1f} ms, generic {qs[base + '_generic']['median_ms']:.1f} ms "
                  f"(generic/typed = {qs[base + '_generic_over_typed']:.1f}x)")
        print(f"ratio batched/naive (total load speed-up): {result['ratio_batched_over_naive']:.1f}x")
    finally:
        server.stop(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
