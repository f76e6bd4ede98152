"""Where mmkg's loader spends its time: the profile behind bench/results/load_profile.txt.

For the triple stage of the batched loader (the benchmark's rows: 10k posts, 50k entities, 100k
triples) it measures, on its own throw-away server:

- wall time, CPU seconds of this Python process (building rows, packing them: the client side) and of
  the server JVM, and the server's own per-statement time (``result_available_after`` +
  ``result_consumed_after``, summed over batches);
- a JFR recording of the server during the triple stage only (``jcmd JFR.start``/``JFR.stop``),
  its execution samples put into categories by their stack: Cypher planning, index seeks, MERGE
  (expand + locks), commit (tx state -> commands, log, apply), Bolt;
- an A/B of the bulk upserts with and without ``cypher.NO_REPLAN`` (interleaved, same process).

Usage: ``python -m bench.load_profile [--repeats 4] [--writers 2]``. Not a test.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load_benchmark import clear, server_cpu_s, synthetic
from bench.machine import describe, save_and_announce
from kg_loader import cypher
from kg_loader import writer as writer_module
from kg_loader.writer import GraphWriter, connect
from mmkg.settings import Neo4jSettings

RESULTS = Path(__file__).resolve().parent / "results" / "load_profile.json"

#: First category whose any marker occurs anywhere in a sample's stack wins.
CATEGORIES = [
    ("cypher planning (parse, plan, re-plan)", ["CypherPlanner.", "QueryCache.compile", "frontend.phases", "compiler.planner"]),
    ("commit: tx state -> commands", ["extractCommands", "TransactionRecordState", "TxStateVisitor", "createCommands"]),
    ("commit: serialise + append to the tx log", ["LogCommandSerialization", "TransactionLogWriter", "TransactionAppender"]),
    ("commit: apply to store, indexes, counts", ["TransactionCommitProcess", "KernelTransactionImplementation.commit",
                                                 "TransactionImplementation.commit", "commitTransaction"]),
    ("bolt: decode parameters, encode results", ["packstream", "PackstreamBuf", "message.decoder"]),
    ("index seeks (Entity.id, locking)", ["NodeUniqueIndexSeek", "IndexSeek", "nodeIndexSeek", "GBPTree", "gbptree"]),
    ("MERGE: expand into + locks", ["LockingMerge", "Expand", "forseti", "acquireExclusive", "acquireShared"]),
    ("create relationship + set properties", ["relationshipCreate", "SetProperty", "setProperty"]),
    ("other query execution", ["cypher.internal.runtime", "cypher.operations", "physicalplanning"]),
    ("bolt / network, other", ["org.neo4j.bolt", "io.netty"]),
]


def categorise(jfr: Path, files: list[Path]) -> dict[str, int]:
    counts: collections.Counter = collections.Counter()
    for path in files:
        out = subprocess.run([str(jfr), "print", "--json", "--stack-depth", "200", "--events", "jdk.ExecutionSample",
                              str(path)], capture_output=True, text=True, check=True).stdout
        for event in json.loads(out)["recording"]["events"]:
            stack = "\n".join(f"{f['method']['type']['name']}.{f['method']['name']}"
                              for f in event["values"]["stackTrace"]["frames"])
            counts[next((name for name, keys in CATEGORIES if any(k in stack for k in keys)), "other")] += 1
    return dict(counts.most_common())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--bolt-port", type=int, default=27787)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from neo4j_server import manager as server

    java_bin = server.find_java_home() / "bin"
    home = Path(tempfile.mkdtemp(prefix="mmkg-profile-neo4j-"))
    s = Neo4jSettings(f"bolt://127.0.0.1:{args.bolt_port}", "neo4j", "mmkg-profile", "neo4j", args.bolt_port, 0, home)
    load_before = os.getloadavg()
    pid = server.start(s)
    statement_s: list[float] = []
    run_batch = writer_module._run_batch

    def timed_run_batch(tx, query, params):
        result = tx.run(query, params)
        records = [dict(r.items()) for r in result]  # as kg_loader.writer._run_batch reads them
        summary = result.consume()
        statement_s.append(((summary.result_available_after or 0) + (summary.result_consumed_after or 0)) / 1000)
        return records, summary.counters

    # Every statement builder the writer calls, as shipped and with the re-plan hint removed (any arguments:
    # upsert_mentions takes the entity type and its broader types).
    shipped = {name: getattr(cypher, name)
               for name in ("upsert_relations", "upsert_relations_by_element_id", "upsert_mentions")}

    def without_hint(build):
        return lambda *args: build(*args).replace(cypher.NO_REPLAN, "", 1)

    variants = {"shipped (NO_REPLAN)": shipped,
                "re-plan allowed (before)": {name: without_hint(build) for name, build in shipped.items()}}
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    jfr_files = []
    try:
        with connect(s) as driver:
            posts, mentions, triples = synthetic(50_000, 100_000, 10_000)
            writer = GraphWriter(driver, writers=args.writers)
            writer.ensure_schema()
            writer_module._run_batch = timed_run_batch
            for rep in range(args.repeats + 1):  # the first round is the warm-up
                for name, builders in variants.items():
                    for attr, build in builders.items():
                        setattr(cypher, attr, build)
                    clear(driver)
                    writer.upsert_posts(posts)
                    t0, s0 = time.perf_counter(), server_cpu_s(pid)
                    writer.upsert_mentions(mentions)
                    mentions_s, mentions_cpu = time.perf_counter() - t0, server_cpu_s(pid) - s0
                    record = rep > 0 and name.startswith("shipped")
                    if record:
                        jfr_files.append(Path(tempfile.gettempdir()) / f"mmkg-profile-{os.getpid()}-{rep}.jfr")
                        subprocess.run([str(java_bin / "jcmd"), str(pid), "JFR.start", f"name=t{rep}", "settings=profile"],
                                       check=True, capture_output=True)
                    statement_s.clear()
                    c0, s0, t0 = time.process_time(), server_cpu_s(pid), time.perf_counter()
                    writer.upsert_relations(triples)
                    wall, py_cpu, srv_cpu = time.perf_counter() - t0, time.process_time() - c0, server_cpu_s(pid) - s0
                    if record:
                        subprocess.run([str(java_bin / "jcmd"), str(pid), "JFR.stop", f"name=t{rep}", f"filename={jfr_files[-1]}"],
                                       check=True, capture_output=True)
                    if rep:
                        runs[name].append({"triples_s": wall, "python_cpu_s": py_cpu, "server_cpu_s": srv_cpu,
                                           "server_statement_s": sum(statement_s), "batches": len(statement_s),
                                           "mentions_s": mentions_s, "mentions_server_cpu_s": mentions_cpu})
    finally:
        writer_module._run_batch = run_batch
        for attr, build in shipped.items():
            setattr(cypher, attr, build)
        server.stop(s)
    samples = categorise(java_bin / "jfr", jfr_files)
    for f in jfr_files:
        f.unlink(missing_ok=True)
    medians = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    result = {"command": "python -m bench.load_profile " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": describe(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "writers": args.writers, "repeats": args.repeats, "medians": medians, "runs": runs,
              "jfr_samples_triples": samples}
    save_and_announce(result, args.out)
    print(f"triple stage, 100k triples, {args.writers} writers, medians of {args.repeats} interleaved loads:")
    for v, m in medians.items():
        print(f"  {v:26} wall {m['triples_s']:.2f} s ({100_000 / m['triples_s']:,.0f} rel/s); CPU: python {m['python_cpu_s']:.2f} s, "
              f"server {m['server_cpu_s']:.2f} s; server time in statements {m['server_statement_s']:.2f} s over "
              f"{m['batches']:.0f} batches (both writers); mentions {m['mentions_s']:.2f} s (server CPU {m['mentions_server_cpu_s']:.2f} s)")
    total = sum(samples.values())
    print(f"server JFR samples in the triple stage (shipped statements, {len(jfr_files)} loads, {total} samples):")
    for name, n in samples.items():
        print(f"  {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
