"""Neo4j loader benchmark: mmkg's batched loader (UNWIND + MERGE, one transaction per batch) side by
side with its peers on the same rows, in one run:

- a naive loader that sends one MERGE per transaction (the straw man);
- neo4j-graphrag's ``Neo4jWriter`` (the KG writer of ``SimpleKGPipeline``; the ``bench`` extra), which
  CREATEs nodes and merges relationships with ``apoc.merge.relationship`` (APOC core is loaded into the
  benchmark's server for it);
- ``neo4j-admin database import full`` from CSV into a fresh store: the store's physical limit (the
  CSV writing and the import are timed apart; the imported store is started and checked to hold the
  graph mmkg's loader writes, checksum for checksum);

plus the cost of an idempotent second load, what a second load of each peer leaves (duplicates), and
the query-speed reason for typed relationship types.

Runs against its own throw-away Neo4j 5.26 server (127.0.0.1:27687, temporary data) so it can
never touch a user's graph. Usage:

    python -m bench.load_benchmark [--entities 50000] [--triples 100000] [--repeats 5] [--writers 2]
                                   [--peers graphrag import | --peers]

Not a test. Prints a table and, on its last line, the batched/naive speed ratio; writes
bench/results/load_benchmark.json (``--out``). The shard-sized run in bench/results/ is
``--entities 600 --triples 600 --posts 200 --repeats 9 --peers --out bench/results/load_benchmark_shard.json``.
neo4j-graphrag comes with ``pip install -c constraints.txt -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from bench.machine import describe, save_and_announce
from kg_loader import cypher
from kg_loader.checksum import graph_checksum
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


# -- peers -------------------------------------------------------------------------------------
#: What each writer promises about a second load of the same rows (measured: ``reload`` in the results).
GUARANTEES = {
    "mmkg": "idempotent: MERGE on constrained deterministic keys; evidence (post_ids) merged per post",
    "graphrag": "not idempotent: CREATEs every node again; relationships merge only between the new nodes",
    "import": "offline, whole store: builds a new database (the server must not be running on it); "
              "a re-import replaces it (--overwrite-destination), it cannot add to a graph",
}


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the server JVM has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counts(driver) -> dict:
    """Nodes, relationships and relationships per type (from the counts store: instant)."""
    records, _, _ = driver.execute_query(cypher.COUNT_GRAPH)
    types, _, _ = driver.execute_query(
        "CALL db.relationshipTypes() YIELD relationshipType AS t "
        "CALL (t) { MATCH ()-[r]->() WHERE type(r) = t RETURN count(r) AS n } RETURN t, n")
    return {**records[0].data(), "by_type": {r["t"]: r["n"] for r in types if r["n"]}}


def relation_properties(rows: list[RelationRow]) -> dict:
    """The properties mmkg's loader gives the relationship of these rows (one triple, one row per
    post, sorted by post id): what the CSV import and neo4j-graphrag write for it."""
    rows = sorted(rows, key=lambda r: r.post_id)
    first = rows[0]
    return {"relation": first.relation, "post_ids": [r.post_id for r in rows], "scores": [r.score for r in rows],
            "evidence_count": len(rows), "max_score": max(r.score for r in rows), "first_run_id": first.run_id,
            "model_version": rows[-1].model_version, "label_set_id": rows[-1].label_set_id, "run_id": rows[-1].run_id}


def triples_by_key(triples) -> dict[tuple, list[RelationRow]]:
    grouped: dict[tuple, list[RelationRow]] = defaultdict(list)
    for r in triples:
        grouped[(r.head_id, r.relation, r.tail_id)].append(r)
    return grouped


def graphrag_graph(posts, mentions, triples):
    """The same rows as neo4j-graphrag's ``Neo4jGraph``: Post and entity nodes (the entity type as its
    label; graphrag adds ``__Entity__`` and ``__KGBuilder__``, and has no second label), MENTIONS and
    one typed relationship per triple row, with the properties mmkg gives them."""
    from neo4j_graphrag.components.types import Neo4jGraph, Neo4jNode, Neo4jRelationship

    nodes = [Neo4jNode(id=p.id, label="Post", properties={k: v for k, v in asdict(p).items() if v is not None})
             for p in posts]
    seen = set()
    for m in mentions:
        if m.entity_id not in seen:
            seen.add(m.entity_id)
            nodes.append(Neo4jNode(id=m.entity_id, label=m.entity_type, properties={
                "id": m.entity_id, "name": m.name, "type": m.entity_type, "aliases": [m.surface],
                "first_run_id": m.run_id}))
    rels = [Neo4jRelationship(start_node_id=m.post_id, end_node_id=m.entity_id, type="MENTIONS", properties={
        "start": m.start, "end": m.end, "text": m.surface, "type": m.entity_type, "score": m.score,
        "model_version": m.model_version, "label_set_id": m.label_set_id, "run_id": m.run_id}) for m in mentions]
    rels += [Neo4jRelationship(start_node_id=r.head_id, end_node_id=r.tail_id, type=r.relation.upper(),
                               properties=relation_properties([r])) for r in triples]
    return Neo4jGraph(nodes=nodes, relationships=rels)


def graphrag_load(writer, graph) -> dict:
    """One ``Neo4jWriter.run`` (its public API, as ``SimpleKGPipeline`` calls it), timed by stage:
    nodes, MENTIONS, triples, and its clean-up of the temporary ids."""
    spent: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stage = name(*args) if callable(name) else name
                spent[stage] += time.perf_counter() - t0
        return wrapper

    writer._upsert_nodes = timed("nodes_s", type(writer)._upsert_nodes.__get__(writer))
    writer._upsert_relationships = timed(lambda rels: "mentions_s" if all(r.type == "MENTIONS" for r in rels) else "triples_s",
                                         type(writer)._upsert_relationships.__get__(writer))
    writer._db_cleaning = timed("cleanup_s", type(writer)._db_cleaning.__get__(writer))
    t0 = time.perf_counter()
    result = asyncio.run(writer.run(graph))
    total = time.perf_counter() - t0
    if result.status != "SUCCESS":
        raise RuntimeError(f"neo4j-graphrag's writer failed: {result.metadata}")
    return {k: spent.get(k, 0.0) for k in ("nodes_s", "mentions_s", "triples_s", "cleanup_s")} | {"total": total}


def _csv_field(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        items = [str(v) if not isinstance(v, float) else repr(v) for v in value]
        if any(";" in i for i in items):
            raise ValueError(f"array item with the array delimiter ';': {value!r}")
        value = ";".join(items)
    return '"' + str(value).replace('"', '""') + '"'


def write_import_csv(folder: Path, posts, mentions, triples) -> list[str]:
    """CSV files of the graph mmkg's loader writes (same labels, types and typed properties), and the
    ``neo4j-admin database import full`` arguments that read them."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, header: list[str], rows) -> Path:
        path = folder / name
        with open(path, "w", encoding="utf-8") as out:
            out.write(",".join(header) + "\n")
            out.writelines(",".join(map(_csv_field, row)) + "\n" for row in rows)
        return path

    post_cols = ("id", "text", "created_at", "author", "lang", "source", "run_id", "digest", "partition")
    p = write("posts.csv", ["id:ID(Post)", "text", "created_at:datetime", *post_cols[3:]],
              ([getattr(post, c) for c in post_cols] for post in posts))
    entities = {}
    for m in mentions:
        entities.setdefault(m.entity_id, m)
    e = write("entities.csv", ["id:ID(Entity)", "name", "type", "aliases:string[]", "first_run_id", ":LABEL"],
              ([m.entity_id, m.name, m.entity_type, [m.surface], m.run_id, f"Entity;{m.entity_type}"]
               for m in entities.values()))
    mt = write("mentions.csv", [":START_ID(Post)", ":END_ID(Entity)", "start:long", "end:long", "text", "type",
                                "score:double", "model_version", "label_set_id", "run_id"],
               ([m.post_id, m.entity_id, m.start, m.end, m.surface, m.entity_type, m.score, m.model_version,
                 m.label_set_id, m.run_id] for m in mentions))
    keys = ("relation", "post_ids", "scores", "evidence_count", "max_score", "first_run_id", "model_version",
            "label_set_id", "run_id")
    r = write("triples.csv", [":START_ID(Entity)", ":END_ID(Entity)", ":TYPE", "relation", "post_ids:string[]",
                              "scores:double[]", "evidence_count:long", "max_score:double", "first_run_id",
                              "model_version", "label_set_id", "run_id"],
              ([h, t, rel.upper(), *(props[k] for k in keys)]
               for (h, rel, t), rows in triples_by_key(triples).items() for props in [relation_properties(rows)]))
    return ["database", "import", "full", "neo4j", f"--nodes=Post={p}", f"--nodes={e}",
            f"--relationships=MENTIONS={mt}", f"--relationships={r}"]


def bulk_import(server, home: Path, args: list[str], overwrite: bool = False) -> dict:
    """One ``neo4j-admin database import full`` into ``home`` (a fresh store unless ``overwrite``):
    the wall time of the tool's process (JVM start included) and the time it reports itself."""
    t0 = time.perf_counter()
    proc = server.admin([*args, *(["--overwrite-destination=true"] if overwrite else [])], home)
    wall = time.perf_counter() - t0
    m = re.search(r"IMPORT DONE in (?:(\d+)m )?(?:(\d+)s )?(\d+)ms", proc.stdout)
    reported = (int(m.group(1) or 0) * 60 + int(m.group(2) or 0) + int(m.group(3)) / 1000) if m else None
    return {"import_s": wall, "import_reported_s": reported}


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


def batched_load_measured(writer: GraphWriter, pid: int, posts, mentions, triples) -> dict:
    """``batched_load`` with the CPU seconds of this Python process and of the server beside the wall time."""
    c0, s0 = time.process_time(), server_cpu_s(pid)
    out = batched_load(writer, posts, mentions, triples)
    return out | {"python_cpu_s": time.process_time() - c0, "server_cpu_s": server_cpu_s(pid) - s0}


def graphrag_load_measured(make_writer, pid: int, graph) -> dict:
    c0, s0 = time.process_time(), server_cpu_s(pid)
    out = graphrag_load(make_writer(), graph)
    return out | {"python_cpu_s": time.process_time() - c0, "server_cpu_s": server_cpu_s(pid) - s0}


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("neo4j.notifications").setLevel(logging.ERROR)  # the checksum's "no such property" notes
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entities", type=int, default=50_000)
    ap.add_argument("--triples", type=int, default=100_000)
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the batched load (median reported)")
    ap.add_argument("--naive-repeats", type=int, default=1, help="repeats of the naive load (slow; 0: none)")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--writers", type=int, default=DEFAULT_WRITERS, help="concurrent write transactions")
    ap.add_argument("--compare-writers", type=int, nargs="*", default=[1],
                    help="other writer counts timed in the same repeats (the batched loader as it was: 1)")
    ap.add_argument("--peers", nargs="*", choices=("graphrag", "import"), default=["graphrag", "import"],
                    help="peers timed in the same run: neo4j-graphrag's Neo4jWriter (interleaved in the same "
                         "repeats; needs the bench extra) and neo4j-admin database import (after them); "
                         "--peers alone: none")
    ap.add_argument("--import-repeats", type=int, default=3, help="repeats of the bulk import (median reported)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the JSON results go")
    ap.add_argument("--bolt-port", type=int, default=27687)
    ap.add_argument("--http-port", type=int, default=27474)
    args = ap.parse_args(argv)

    from neo4j_server import manager as server

    if "graphrag" in args.peers:
        try:
            import neo4j_graphrag  # noqa: F401
        except ImportError:
            ap.error("neo4j-graphrag is not installed: pip install -c constraints.txt -e '.[bench]' "
                     "(or leave it out: --peers import)")
    load_before = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="mmkg-bench-neo4j-"))
    settings = Neo4jSettings(f"bolt://127.0.0.1:{args.bolt_port}", "neo4j", "mmkg-bench", "neo4j", args.bolt_port, args.http_port, home)
    pid = server.start(settings)
    # neo4j-graphrag writes into a server of its own (same JVM settings, APOC core loaded), with only the
    # schema it creates itself: mmkg's unique constraints would refuse its second load instead of letting
    # it duplicate, and dropping and re-creating them between loads would empty both plan caches.
    peer_settings = Neo4jSettings(f"bolt://127.0.0.1:{args.bolt_port + 2}", "neo4j", "mmkg-bench", "neo4j",
                                  args.bolt_port + 2, 0, Path(tempfile.mkdtemp(prefix="mmkg-bench-graphrag-")))
    peer_pid = server.start(peer_settings, apoc=True) if "graphrag" in args.peers else None
    imported = None
    try:
        with connect(settings) as driver, connect(peer_settings) as peer_driver:
            posts, mentions, triples = synthetic(args.entities, args.triples, args.posts)
            writer = GraphWriter(driver, batch_size=args.batch_size, writers=args.writers)
            others = {w: GraphWriter(driver, batch_size=args.batch_size, writers=w) for w in args.compare_writers}
            writer.ensure_schema()
            clear(driver)
            batched_load(writer, posts, mentions, triples)  # warm-up: JIT-compiles the server's query paths
            reload = {"mmkg": {"first": counts(driver)}}
            batched_load(writer, posts, mentions, triples)
            reload["mmkg"]["second"] = counts(driver)
            mmkg_checksum = graph_checksum(driver)
            graph = make_graphrag = None
            if "graphrag" in args.peers:
                from neo4j_graphrag.components.kg_writer import Neo4jWriter

                graph = graphrag_graph(posts, mentions, triples)

                def make_graphrag():
                    return Neo4jWriter(peer_driver, batch_size=args.batch_size)

                graphrag_load(make_graphrag(), graph)  # warm-up, and what a second load leaves
                reload["graphrag"] = {"first": counts(peer_driver)}
                graphrag_load(make_graphrag(), graph)
                reload["graphrag"]["second"] = counts(peer_driver)
            batched, second, other, peer = [], [], {w: [] for w in others}, []
            for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits all alike
                clear(driver)
                batched.append(batched_load_measured(writer, pid, posts, mentions, triples))
                second.append(batched_load(writer, posts, mentions, triples))
                assert second[-1]["created"] == 0, "second load created nodes or relationships"
                for w, other_writer in others.items():
                    clear(driver)
                    other[w].append(batched_load(other_writer, posts, mentions, triples))
                if graph is not None:
                    clear(peer_driver)
                    peer.append(graphrag_load_measured(make_graphrag, peer_pid, graph))
            naive = []
            for _ in range(args.naive_repeats):
                clear(driver)
                naive.append(naive_load(driver, posts, mentions, triples))
            qs = query_speed(driver, triples, repeats=30)
        if "import" in args.peers:
            imported = run_imports(server, args, posts, mentions, triples, reload, mmkg_checksum)

        def med(runs, key):
            return statistics.median(r[key] for r in runs)

        keys = ("posts_s", "entities_s", "triples_s")

        def medians(runs):
            """Median of each stage and of the whole load (the median of totals, not a sum of medians)."""
            return {k: med(runs, k) for k in keys} | {"total": statistics.median(sum(r[k] for k in keys) for r in runs)}

        b, s2 = medians(batched), medians(second)
        n = medians(naive) if naive else None  # --naive-repeats 0: no straw man this run
        o = {w: medians(runs) for w, runs in other.items()}
        b_total = b["total"]
        rel_per_s = args.triples / med(batched, "triples_s")
        n_rels = reload["mmkg"]["first"]["relationships"]
        result = {
            "command": "python -m bench.load_benchmark " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": describe(),
            "load_average_before": load_before,
            "neo4j": "5.26 community, embedded launcher, page cache 256m; neo4j-graphrag on a second such server with APOC core",
            "jvm_options": list(server.JVM_OPTIONS),
            "sizes": {"posts": args.posts, "entities": args.entities, "triples": args.triples, "batch_size": args.batch_size},
            "graph": reload["mmkg"]["first"],
            "writers": args.writers,
            "batched_median_s": b,
            "batched_cpu_median_s": {k: med(batched, k) for k in ("python_cpu_s", "server_cpu_s")},
            "second_load_median_s": s2,
            "other_writers_median_s": o,
            "deadlock_retries": {"batched": [r["deadlocks"] for r in batched], "second": [r["deadlocks"] for r in second]}
            | {f"writers_{w}": [r["deadlocks"] for r in runs] for w, runs in other.items()},
            "naive_median_s": n,
            "repeats": {"batched": args.repeats, "naive": args.naive_repeats, "graphrag": len(peer),
                        "import": args.import_repeats if imported else 0},
            "batched_relationships_per_s": rel_per_s,
            "batched_all_relationships_per_s": n_rels / b_total,
            "ratio_other_writers_over_batched": {w: m["total"] / b_total for w, m in o.items()},
            "ratio_batched_over_naive": n["total"] / b_total if n else None,
            "guarantees": GUARANTEES,
            "reload": reload,
            "mmkg_checksum": mmkg_checksum,
            "query_speed": qs,
        }
        if peer:
            g = {k: med(peer, k) for k in (*peer[0],)}
            result["graphrag"] = {"version": _version("neo4j-graphrag"), "median_s": g,
                                  "triples_relationships_per_s": args.triples / g["triples_s"],
                                  "all_relationships_per_s": n_rels / g["total"],
                                  "ratio_over_batched": g["total"] / b_total,
                                  "ratio_triples_over_batched": g["triples_s"] / b["triples_s"]}
        if imported:
            imported["all_relationships_per_s"] = n_rels / imported["median_s"]["import_s"]
            imported["ratio_batched_over_import"] = b_total / imported["median_s"]["import_s"]
            imported["ratio_batched_over_import_and_schema"] = b_total / (imported["median_s"]["import_s"] + imported["schema_s"])
            result["import"] = imported
        result["load_average_after"] = os.getloadavg()
        save_and_announce(result, args.out)
        print(f"{'':12}{'posts':>10}{'entities':>10}{'triples':>10}{'total':>10}  (median seconds)")
        rows = ((f"batched x{args.writers}", result["batched_median_s"]), ("second load", result["second_load_median_s"]),
                *((f"batched x{w}", t) for w, t in result["other_writers_median_s"].items()), ("naive", result["naive_median_s"]))
        for name, row in rows:
            if row is None:
                continue
            print(f"{name:12}" + "".join(f"{row[k]:>10.2f}" for k in (*keys, "total")))
        print(f"deadlock retries per load: {result['deadlock_retries']}")
        cpu = result["batched_cpu_median_s"]
        print(f"batched x{args.writers} CPU per load: python {cpu['python_cpu_s']:.2f} s, server {cpu['server_cpu_s']:.2f} s "
              f"(wall {b_total:.2f} s on {result['machine']['logical_cpus']} CPUs)")
        print(f"batched triples: {rel_per_s:,.0f} relationships/s")
        print_peers(result)
        for base in ("neighbours", "count", "two_hop"):
            print(f"query {base}: typed {qs[base + '_typed']['median_ms']:.1f} ms, generic {qs[base + '_generic']['median_ms']:.1f} ms "
                  f"(generic/typed = {qs[base + '_generic_over_typed']:.1f}x)")
        if n:
            print(f"ratio batched/naive (total load speed-up): {result['ratio_batched_over_naive']:.1f}x")
    finally:
        server.stop(settings)
        server.stop(peer_settings)
        for folder in (home, peer_settings.home):  # throw-away servers: their stores go with them
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def run_imports(server, args, posts, mentions, triples, reload: dict, mmkg_checksum: str) -> dict:
    """CSV writing and ``neo4j-admin database import full`` (each repeat into a fresh store; then once
    more over the last one with ``--overwrite-destination``, what a re-run does), then a server started
    on the store: its counts and checksum against mmkg's load, and the time to build mmkg's schema."""
    work = Path(tempfile.mkdtemp(prefix="mmkg-bench-import-"))
    try:
        csv_s, runs = [], []
        for i in range(args.import_repeats):
            shutil.rmtree(work / "csv", ignore_errors=True)
            t0 = time.perf_counter()
            import_args = write_import_csv(work / "csv", posts, mentions, triples)
            csv_s.append(time.perf_counter() - t0)
            shutil.rmtree(work / "home", ignore_errors=True)
            runs.append(bulk_import(server, work / "home", import_args))
        reimport = bulk_import(server, work / "home", import_args, overwrite=True)
        csv_bytes = sum(f.stat().st_size for f in (work / "csv").iterdir())
        s = Neo4jSettings(f"bolt://127.0.0.1:{args.bolt_port + 1}", "neo4j", "mmkg-bench", "neo4j",
                          args.bolt_port + 1, 0, work / "home")
        t0 = time.perf_counter()
        server.start(s)
        start_s = time.perf_counter() - t0
        try:
            with connect(s) as driver:
                got = counts(driver)
                checksum = graph_checksum(driver)
                t0 = time.perf_counter()
                GraphWriter(driver).ensure_schema()
                schema_s = time.perf_counter() - t0
        finally:
            server.stop(s)
        reload["import"] = {"first": None, "second": got}
        return {
            "median_s": {"csv_s": statistics.median(csv_s), "import_s": statistics.median(r["import_s"] for r in runs),
                         "import_reported_s": statistics.median(r["import_reported_s"] or 0 for r in runs)},
            "runs": [{"csv_s": c, **r} for c, r in zip(csv_s, runs)],
            "reimport_overwrite": reimport,
            "csv_bytes": csv_bytes,
            "server_start_s": start_s,
            "schema_s": schema_s,
            "counts": got,
            "checksum": checksum,
            "same_graph_as_mmkg": checksum == mmkg_checksum,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_peers(result: dict) -> None:
    """The one-run side-by-side table: rates, ratios, and what each writer guarantees (with the counts
    after a second load of the same rows)."""
    b = result["batched_median_s"]
    g, imp, rl = result.get("graphrag"), result.get("import"), result["reload"]
    n_rels = result["graph"]["relationships"]
    if not g and not imp:
        return
    print(f"side by side, same rows ({result['graph']['nodes']:,} nodes, {n_rels:,} relationships; medians):")
    print(f"  {'writer':34}{'load s':>8}{'all rel/s':>11}{'triples rel/s':>15}{'time/mmkg':>10}  after a 2nd load (nodes/rels)")

    def after(name):
        r = rl.get(name)
        return f"{r['second']['nodes']:,}/{r['second']['relationships']:,}" if r else "-"

    print(f"  {'mmkg batched x' + str(result['writers']):34}{b['total']:>8.2f}{n_rels / b['total']:>11,.0f}"
          f"{result['batched_relationships_per_s']:>15,.0f}{'1.00x':>10}  {after('mmkg')}")
    if g:
        m = g["median_s"]
        print(f"  {'neo4j-graphrag ' + str(g['version']) + ' Neo4jWriter':34}{m['total']:>8.2f}{g['all_relationships_per_s']:>11,.0f}"
              f"{g['triples_relationships_per_s']:>15,.0f}{g['ratio_over_batched']:>9.2f}x  {after('graphrag')}")
        print(f"    graphrag stages: nodes {m['nodes_s']:.2f} s, MENTIONS {m['mentions_s']:.2f} s, triples {m['triples_s']:.2f} s, "
              f"clean-up {m['cleanup_s']:.2f} s; CPU python {m['python_cpu_s']:.2f} s, server {m['server_cpu_s']:.2f} s")
    if imp:
        m = imp["median_s"]
        print(f"  {'neo4j-admin database import full':34}{m['import_s']:>8.2f}{imp['all_relationships_per_s']:>11,.0f}"
              f"{'-':>15}{m['import_s'] / b['total']:>9.2f}x  {after('import')} (re-import with --overwrite-destination)")
        print(f"    import: tool reports {m['import_reported_s']:.2f} s (the rest is JVM start); CSV writing {m['csv_s']:.2f} s "
              f"({imp['csv_bytes'] / 1e6:.1f} MB, not in the import time); then server start {imp['server_start_s']:.1f} s, "
              f"mmkg's constraints and indexes {imp['schema_s']:.2f} s; same graph as mmkg's load (checksum): {imp['same_graph_as_mmkg']}")
    print("  guarantees: " + "; ".join(f"{k}: {v}" for k, v in result["guarantees"].items()))
    targets = [("triples >= 50k relationships/s", result["batched_relationships_per_s"] >= 50_000,
                f"{result['batched_relationships_per_s']:,.0f}/s")]
    if g:
        targets.append((">= 3x neo4j-graphrag (whole load)", g["ratio_over_batched"] >= 3, f"{g['ratio_over_batched']:.2f}x"))
    if imp:
        m = imp["median_s"]
        vs_tool = b["total"] / m["import_reported_s"] if m["import_reported_s"] else float("nan")
        targets.append(("within 3x of the bulk import", max(imp["ratio_batched_over_import"], vs_tool) <= 3,
                        f"mmkg's load / the import's wall time {imp['ratio_batched_over_import']:.2f}x; / the time the tool "
                        f"reports {vs_tool:.2f}x; / import + mmkg's schema build {imp['ratio_batched_over_import_and_schema']:.2f}x"))
    for name, ok, value in targets:
        print(f"  target {name}: {'met' if ok else 'MISSED'} ({value})")


if __name__ == "__main__":
    raise SystemExit(main())
