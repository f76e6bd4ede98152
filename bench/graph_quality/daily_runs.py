"""``python -m bench.graph_quality.daily_runs``: typed entities in the graph when the posts arrive as daily runs.

The graph-quality benchmark types a whole test set in one call, i.e. one run, whose type agreement sees every
mention. Production loads one run per interval: each run agrees with itself, and the load folds a name that
runs typed differently into one entity (``kg_loader.type_agreement``). This benchmark splits a tweet set into
``--runs`` contiguous runs in file order (days), types each run on its own (the typer's agreement over that
run's mentions, as ``agree_run_types`` does for a run), loads them one after another into a throw-away Neo4j,
and scores the graph's MENTIONS (their entity's type) against gold with the graph-quality benchmark's
definitions. Three arms per system, same detected mentions:

- ``one run``: every post in one run (the graph-quality benchmark's setting);
- ``daily, no cross-run agreement``: the runs loaded with the load's type agreement switched off (what the graph
  held before it existed: a name typed two ways by two runs is two entities);
- ``daily (shipped)``: the runs loaded as the product loads them.

Besides typed/untyped P/R/F1 it counts the graph's entities and the names that more than one entity holds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.graph_quality import graph
from bench.graph_quality.run import (ENTITY_SETS, REPO_ROOT, RESULTS_DIR, entity_result, git_info, load_extractor,
                                     prepare_twitter, research_data)  # fmt: skip

ARMS = ("one run", "daily, no cross-run agreement", "daily (shipped)")

SPLIT_NAMES = """
MATCH (e:Entity) WITH e.name AS name, count(*) AS n
RETURN sum(n) AS entities, sum(CASE WHEN n > 1 THEN 1 ELSE 0 END) AS names_split
"""


def chunks(items: list, n: int) -> list[list]:
    """``items`` in ``n`` contiguous parts of nearly equal size, in order."""
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (k < extra)
        out.append(items[start:end])
        start = end
    return out


def load_runs(driver, ontology, runs: list[tuple[list, list]], agree: bool) -> list[dict]:
    """Clear the graph, then load each (posts, typed) as its own run through the project's loader; with
    ``agree`` False the load's cross-run type agreement is switched off (``GraphWriter.agree_entity_types``
    replaced by a no-op for this call only)."""
    from kg_loader.load import load_extraction, writer_for
    from kg_loader.writer import GraphWriter, LoadReport

    graph.clear(driver)
    writer = writer_for(driver, ontology)
    writer.ensure_schema()
    original = GraphWriter.agree_entity_types
    if not agree:
        GraphWriter.agree_entity_types = lambda self, names: LoadReport()
    try:
        return [load_extraction(writer, posts, typed, [], f"day-{k + 1:02d}").as_dict()
                for k, (posts, typed) in enumerate(runs)]  # fmt: skip
    finally:
        GraphWriter.agree_entity_types = original


def time_loads(driver, ontology, runs: list[tuple[list, list]], repeats: int) -> dict:
    """Seconds to load ``runs`` into an emptied graph with and without the cross-run type agreement: one
    warm-up, then ``repeats`` of each, interleaved; medians and their ratio."""
    import statistics

    load_runs(driver, ontology, runs, True)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for agree in (False, True):
            t = time.perf_counter()
            load_runs(driver, ontology, runs, agree)
            seconds[agree].append(round(time.perf_counter() - t, 3))
    med = {k: round(statistics.median(v), 3) for k, v in seconds.items()}
    return {"agree_s": seconds[True], "no_agree_s": seconds[False], "agree_median_s": med[True],
            "no_agree_median_s": med[False], "ratio": round(med[True] / med[False], 3),
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.daily_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--entity-set", choices=list(ENTITY_SETS), default="twitter2017-valid")
    parser.add_argument("--runs", type=int, default=7, help="contiguous runs (days) the posts arrive in (default 7)")
    parser.add_argument("--systems", nargs="+", choices=["mg-vmoe", "label-similarity"], default=["mg-vmoe"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "daily_runs")
    parser.add_argument("--time-repeats", type=int, default=0, metavar="N",
                        help="also time loading the daily runs with and without the cross-run agreement, N times "
                             "each, interleaved, after one warm-up (the first system's typing)")
    args = parser.parse_args(argv)
    data = research_data(ENTITY_SETS[args.entity_set])
    if data is None:
        return 0
    import torch

    torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start, wall0, git = os.getloadavg(), time.perf_counter(), git_info()
    from bench.machine import describe
    from extraction.detection import EntityDetector
    from mmkg.ontology import load_ontology

    ontology = load_ontology(REPO_ROOT / "ontology" / "ontology.yaml")
    tw = prepare_twitter(data, args.limit, args.entity_set)
    mentions = EntityDetector().detect(tw["posts"])
    day_posts = chunks(tw["posts"], args.runs)
    results: dict = {}
    with graph.throwaway_neo4j() as driver:
        for name in args.systems:
            extractor = load_extractor(name)
            by_id = {p.id: p for p in tw["posts"]}
            one = extractor.type_mentions(by_id, mentions, ontology)
            daily = []
            for posts in day_posts:
                ids = {p.id for p in posts}
                daily.append((posts, extractor.type_mentions({p.id: p for p in posts},
                                                             [m for m in mentions if m.post_id in ids], ontology)))
            typed_daily = [tm for _, typed in daily for tm in typed]
            arms = {}
            for arm, runs, agree, typed in (("one run", [(tw["posts"], one)], True, one),
                                            ("daily, no cross-run agreement", daily, False, typed_daily),
                                            ("daily (shipped)", daily, True, typed_daily)):
                loads = load_runs(driver, ontology, runs, agree)
                r = entity_result(driver, tw["gold"], typed, loads[-1], tw["ignore"])
                r.pop("load"), r.pop("query_s")
                r.update(graph.query(driver, SPLIT_NAMES)[0])
                r["entities_type_agreed"] = sum(x["entities_type_agreed"] for x in loads)
                r["names_left_split"] = {k: sum(x["names_left_split"].get(k, 0) for x in loads)
                                         for k in sorted({k for x in loads for k in x["names_left_split"]})}
                arms[arm] = r
                print(f"{name:<17} {arm:<31} typed F1 {r['typed']['f1']:5.1f}  untyped F1 {r['untyped']['f1']:5.1f}  "
                      f"entities {r['entities']}  names split {r['names_split']}  folded {r['entities_type_agreed']}",
                      flush=True)  # fmt: skip
            results[name] = arms
            if args.time_repeats and "load_timing" not in results:
                results["load_timing"] = time_loads(driver, ontology, daily, args.time_repeats)
    out = {
        "command": "python -m bench.graph_quality.daily_runs " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": started, "wall_s": round(time.perf_counter() - wall0, 1), "git": git,
        "load_average_at_start": [round(x, 2) for x in load_at_start], "entity_set": tw["summary"],
        "runs": args.runs, "posts_per_run": [len(p) for p in day_posts], "results": results,
        "machine": describe(),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{args.entity_set}_{args.runs}runs"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    lines = [f"# Typed entities in the graph, posts in {args.runs} daily runs: {args.entity_set}", "",
             f"`{out['command']}` - {started}, commit `{git.get('commit', '')[:12]}`, wall {out['wall_s']} s, "
             f"{out['machine']['cpu']} ({out['machine']['logical_cpus']} CPUs), load average at the start {out['load_average_at_start']}. Runs of {out['posts_per_run']} posts "
             f"(contiguous, file order). Definitions: `bench/graph_quality/daily_runs.py`.", "",
             "| system | arm | typed P | typed R | **typed F1** | untyped F1 | entities | names held by >1 entity "
             "| entities folded by the load |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    timing = results.pop("load_timing", None)
    for name, arms in results.items():
        for arm, r in arms.items():
            lines.append(f"| {name} | {arm} | {r['typed']['precision']:.1f} | {r['typed']['recall']:.1f} | **{r['typed']['f1']:.1f}** "
                         f"| {r['untyped']['f1']:.1f} | {r['entities']} | {r['names_split']} | "
                         f"{r['entities_type_agreed']} |")  # fmt: skip
    if timing:
        lines += ["", f"**Load time of the {args.runs} runs** (the first system's typing; warm-up 1, {args.time_repeats} "
                      f"repeats each, interleaved; median): with the cross-run agreement {timing['agree_median_s']} s, "
                      f"without {timing['no_agree_median_s']} s, ratio {timing['ratio']} (all: {timing})."]
        out["load_timing"] = timing
        stem.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem.with_suffix('.json')} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
