"""How often the typer's written names are mistyped, by the margin they were typed by: development sets only.

    MMKG_DATA=/work/shared/data python -m bench.graph_quality.type_margin [--out DIR]

Twitter-2017 ``valid.txt`` and WNUT-16 ``dev`` go through the real stages as in ``bench.graph_quality.type_rules``
(``EntityDetector``, the shipped typer's raw scores, its decision: ``agree_on_types`` with the checkpoint's
``min_score`` and ``min_gap``). Each written name (a surface form and its type) has a margin, ``type_gap`` on the mean
of its mentions' raw scores: how far its type beats the best type outside its lineage. A name is *mistyped* when most
of its mentions that are gold spans carry another gold type (coarse PER/LOC/ORG/MISC, as the benchmark scores); names
with no gold span (spans the detector made up) are counted apart. The table says where a person's review of the
names a run typed pays: ``extraction.zero_shot.REVIEW_GAP``, the margin under which a run lists a name
(``least_sure_names``), was read off it. Writes ``type_margin.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.graph_quality.run import RESULTS_DIR, probe_stamp, write_result
from bench.graph_quality.scoring import coarse_type
from bench.graph_quality.type_rules import DEV_SETS, dev_typer, scored_mentions

#: Upper edges of the margin buckets (raw points); the first bucket starts at the typer's own gap.
EDGES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, float("inf"))


def margin_table(scored: dict, names: list[str], min_score: float, min_gap: float | None, parents=None,
                 review_gap: float | None = None) -> dict:
    """Per margin bucket: names written, those with a gold span, and of these the mistyped; and the same for the names
    a run would list for review at ``review_gap`` (``least_sure_names`` itself decides which) and the rest."""
    from extraction.zero_shot import REVIEW_GAP, agree_on_types, least_sure_names, type_gap, written_names

    review_gap = REVIEW_GAP if review_gap is None else review_gap
    decided = agree_on_types(scored["keys"], scored["raw"], min_score, parents=parents, min_gap=min_gap)
    _, listed = least_sure_names(scored["keys"], scored["raw"], decided, names, parents, below=review_gap,
                                 listed=len(decided))
    under = {(e["name"], e["types"][0][0]) for e in listed}
    gold = {(pid, s, e): set(t.split("|")) for pid, s, e, t in scored["gold"]}
    rows = {edge: {"names": 0, "with_gold_span": 0, "mistyped": 0} for edge in EDGES}
    split = {side: {"names": 0, "with_gold_span": 0, "mistyped": 0} for side in ("under", "over")}
    for (key, kind), idx in written_names(scored["keys"], decided).items():
        gap = type_gap(scored["raw"][idx].mean(0), kind, parents)
        spans = [scored["spans"][i] for i in idx if scored["spans"][i] in gold]
        wrong = sum(coarse_type(names[kind]) not in gold[s] for s in spans) > len(spans) / 2
        for row in (rows[next(e for e in EDGES if gap < e)], split["under" if (key, names[kind]) in under else "over"]):
            row["names"] += 1
            row["with_gold_span"] += bool(spans)
            row["mistyped"] += bool(spans) and wrong
    for row in (*rows.values(), *split.values()):
        row["mistyped_share"] = round(100 * row["mistyped"] / row["with_gold_span"], 1) if row["with_gold_span"] else None
    return {"buckets": [{"below": edge, **rows[edge]} for edge in EDGES], "review_gap": review_gap, **split}


def render(result: dict) -> str:
    lines = ["# Mistyped names by the margin the typer wrote them with (development sets)", "",
             f"`python -m bench.graph_quality.type_margin` — {result['when']}, commit `{result['commit']}`, wall "
             f"{result['wall_s']} s. Definitions: `bench/graph_quality/type_margin.py`. The shipped typer's decision: "
             f"`min_score` {result['min_score']:.3f}, `min_gap` {result['min_gap']}; a run lists the names it typed by less "
             f"than `REVIEW_GAP` = {result['review_gap']} (`extraction.zero_shot.least_sure_names`).", "",
             "| dev set | margin below | names written | with a gold span | mistyped | mistyped share |",
             "|---|---|---|---|---|---|"]
    for s, t in result["sets"].items():
        for r in t["buckets"]:
            lines.append(f"| {s} | {r['below']} | {r['names']} | {r['with_gold_span']} | {r['mistyped']} | "
                         f"{r['mistyped_share']} % |")
    lines += ["", f"| dev set | names | under {result['review_gap']}: names / mistyped of those with a gold span | over: "
                  "names / mistyped | mistyped names the list holds |", "|---|---|---|---|---|"]
    for s, t in result["sets"].items():
        u, o = t["under"], t["over"]
        held = u["mistyped"] / max(u["mistyped"] + o["mistyped"], 1)
        lines.append(f"| {s} | {u['names'] + o['names']} | {u['names']} / {u['mistyped']} of {u['with_gold_span']} "
                     f"({u['mistyped_share']} %) | {o['names']} / {o['mistyped']} of {o['with_gold_span']} "
                     f"({o['mistyped_share']} %) | {u['mistyped']} of {u['mistyped'] + o['mistyped']} ({100 * held:.0f} %) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.type_margin", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    setup = dev_typer(args.threads)
    if setup is None:
        return 0
    data, ontology, names, extractor = setup
    sets = {}
    for entity_set in DEV_SETS:
        scored = scored_mentions(data, entity_set, extractor, ontology)
        sets[entity_set] = margin_table(scored, names, extractor.min_type_score, extractor.type_min_gap,
                                        ontology.parent_indices())
    result = {**probe_stamp(t0), "min_score": extractor.min_type_score,
              "min_gap": extractor.type_min_gap, "review_gap": sets[DEV_SETS[0]]["review_gap"], "sets": sets}
    write_result(args.out, "type_margin", result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
