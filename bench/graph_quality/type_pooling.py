"""A typing idea probed end to end on the development sets, never on test (not shipped).

    MMKG_DATA=/work/shared/data python -m bench.graph_quality.type_pooling [--out DIR]

The same protocol as ``bench.graph_quality.type_rules``: Twitter-2017 ``valid.txt`` and WNUT-16 ``dev`` through the
real ``EntityDetector`` and the shipped typer's raw scores once, each variant applied to those scores, the written
mentions scored as ``bench.graph_quality`` scores the graph (exact span + coarse type). The choice rule is
``type_rules.choose_gap``'s: the best mean typed F0.5 over the two dev sets among the settings whose typed F1 on each
dev set is at least the calibrated threshold alone's (``type_rules.best_fair_setting``); ties go to the shipped
setting.

**Evidence pooled over a name's mentions.** The typer keeps a name's agreed type when it beats every other type by
``min_gap`` on the *mean* of its mentions' raw scores, so a name seen in 7 posts is held to the same gap as one seen
once (the demo's "Corvid Labs": Organization over Product by 0.15 on the mean of 6 mentions, abstained). Probed: the
gap of the mean times sqrt(n) (a standard-error test) or times n (independent evidence), each at the gaps of
``type_rules.MIN_GAP`` up to 0.75. (spaCy's label as typing evidence: ``bench/results/entity_probes.md`` section 1.)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from bench.graph_quality.run import RESULTS_DIR, probe_stamp, write_result
from bench.graph_quality.type_rules import DEV_SETS, best_fair_setting, score_decisions

POOLING = ("mean", "sqrt(n)", "n")
POOLED_GAPS = (None, 0.25, 0.5, 0.75)


def pooled_decisions(scored: dict, min_score: float, min_gap: float | None, pooling: str, parents) -> list:
    """``agree_on_types`` without a gap, then the gap test on each (name, agreed type) group's mean scores with the
    gap scaled by the group's size as ``pooling`` says (``mean``: the shipped rule)."""
    from extraction.zero_shot import agree_on_types, type_gap, written_names

    decided = agree_on_types(scored["keys"], scored["raw"], min_score, parents=parents)
    if min_gap is None:
        return decided
    scale = {"mean": lambda n: 1.0, "sqrt(n)": math.sqrt, "n": float}[pooling]
    for (_, kind), idx in written_names(scored["keys"], decided).items():
        if type_gap(scored["raw"][idx].mean(0), kind, parents) * scale(len(idx)) < min_gap:
            for i in idx:
                decided[i] = None
    return decided


def main(argv: list[str] | None = None) -> int:
    from bench.graph_quality.type_rules import dev_typer, scored_mentions

    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.type_pooling", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    setup = dev_typer(args.threads)
    if setup is None:
        return 0
    data, ontology, names, extractor = setup
    parents = ontology.parent_indices()
    min_score, shipped_gap = extractor.min_type_score, extractor.type_min_gap
    pooling: dict[str, dict] = {}
    for entity_set in DEV_SETS:
        scored = scored_mentions(data, entity_set, extractor, ontology)
        pooling[entity_set] = {"no gap": score_decisions(scored, pooled_decisions(scored, min_score, None, "mean",
                                                                                  parents), names)}
        for how in POOLING:
            for gap in POOLED_GAPS[1:]:
                label = "shipped" if (how, gap) == ("mean", shipped_gap) else f"{how}, gap {gap}"
                pooling[entity_set][label] = score_decisions(
                    scored, pooled_decisions(scored, min_score, gap, how, parents), names)
    result = {**probe_stamp(t0), "min_score": min_score, "shipped_gap": shipped_gap,
              "pooling": pooling, "chosen": best_fair_setting(pooling, "no gap", prefer=lambda setting: setting == "shipped")}
    write_result(args.out, "type_pooling", result, render(result))
    return 0


def render(result: dict) -> str:
    lines = ["# Evidence pooled over a name's mentions: a typing probe on the development sets (not shipped)", "",
             f"`python -m bench.graph_quality.type_pooling` — {result['when']}, commit `{result['commit']}`, wall "
             f"{result['wall_s']} s; shipped typer (`met-tweets`, `min_score` {result['min_score']:.3f}, gap "
             f"{result['shipped_gap']}). Protocol, variants and the choice rule: `bench/graph_quality/type_pooling.py`.",
             ""]
    lines += [f"**Chosen by the rule: {result['chosen']}**", "",
              "| dev set | setting | written | typed P / R / F1 | typed F0.5 | span F1 |", "|---|---|---|---|---|---|"]
    for entity_set, rows in result["pooling"].items():
        for label, r in rows.items():
            lines.append(f"| {entity_set} | {label} | {r['written']} | {r['typed_precision']} / {r['typed_recall']} / "
                         f"{r['typed_f1']} | {r['typed_f0_5']} | {r['span_f1']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
