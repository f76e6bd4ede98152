"""Event and Product told apart on the development sets, which label both MISC: two readers' labels, and a probe.

    MMKG_DATA=/work/shared/data python -m bench.graph_quality.event_product [--out DIR]
    MMKG_DATA=/work/shared/data python -m bench.graph_quality.event_product --listing FILE   # what the readers read

**Why.** Twitter-2017 labels events and products MISC, and so does the coarse mapping of WNUT-16's product, movie,
tvshow and other, so no development number could see the typer confuse the shipped ontology's Event and Product,
the demo's most frequent mistype (ByteConf 2026, Coastline Games, Lantern Night Market typed Product).

**Gold.** Every MISC gold mention of Twitter-2017 ``valid.txt`` and WNUT-16 ``dev`` (``misc_items``: 336, no test
file is read) was labelled Event, Product or Other by two readers, independently, from the post alone
(``models/annotations/misc-types-guideline.md``; no model output shown): ``models/annotations/misc-types-dev.json``
and ``misc-types-dev.reader2.json`` (``models.data.MISC_TYPE_LABELS``). Where the readers agree, the mention's gold
type becomes EVENT or PRODUCT; an agreed Other leaves the gold (a nationality or a slogan: no type of the ontology
fits, so a typed mention there is a false positive); where they disagree, the span is not scored (an ignored
region, as WNUT-16's handles are).

**Scores.** The ``type_rules`` protocol: the posts as written through the real ``EntityDetector``, the shipped typer's
raw scores under the label set, ``agree_on_types`` with the checkpoint's ``min_score`` and ``min_gap``; the written
mentions scored by exact span and *fine* type (Person/Location/Organization/Event/Product -> PER/LOC/ORG/EVENT/
PRODUCT) beside the coarse type the other benchmarks use (MISC for both).

**Probe: the label set's descriptions of Event and Product** (``DESCRIPTIONS``; the typer reads a type through its
description, so this is what a user of the label set can change). Rule, fixed before the run: of the variants
whose typed F1 on each dev set, coarse and fine, is at least the shipped descriptions', the best summed fine typed
F0.5; ties go to the shipped descriptions.

**Another typer** (``--entity-checkpoint PATH --variants shipped``): the same scores for another entity checkpoint
under the shipped label set, e.g. one trained on ``tweets-all-types+events`` (the readers' labels of the *train*
files' MISC mentions, ``models.data.load_all_types``), at its own calibrated ``min_score``.

**Typers compared at their own operating points** (``--compare PATH``, writes ``event_product_typers.{json,md}``).
A typer's calibrated ``min_score`` depends on its validation classes (0.196 for ``met-tweets``, validated on
PER/LOC/ORG/MISC; 1.128 for the ``+events`` typer, validated on PER/LOC/ORG/EVENT/PRODUCT), so a comparison at the
calibrated thresholds compares thresholds as much as typers. Rule, fixed before this comparison ran (after the
first, at calibrated thresholds, kept ``met-tweets``): each typer's ``min_score`` is the value of
``MIN_SCORE_GRID`` or its calibrated one with the best summed coarse typed F1 over the two dev sets (ties: the
higher), gap 0.25 for both; the challenger replaces the shipped typer if at those points its coarse and fine
typed F1 on each dev set are at least the shipped typer's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench.graph_quality.run import ENTITY_SETS, RESULTS_DIR, probe_stamp, research_data, write_result
from bench.graph_quality.type_rules import DEV_SETS, score_decisions, written
from models.data import misc_type_labels

LABELS = ("Event", "Product", "Other")
FINE_TYPES = ("PER", "LOC", "ORG", "EVENT", "PRODUCT")
_TO_FINE = {"Person": "PER", "Location": "LOC", "Organization": "ORG", "Event": "EVENT", "Product": "PRODUCT"}

#: Description variants probed: type name -> the description that replaces the shipped one.
DESCRIPTIONS = {
    "shipped": {},
    "Event named more widely": {
        "Event": "a named event such as a festival, holiday, tournament, match, race, games, conference, fair, market, "
                 "award ceremony, concert, tour or election"},
    "Product named more widely": {
        "Product": "a product or creative work such as a phone, car, app, video game, film, TV show, album, song or "
                   "book"},
    "both named more widely": {},  # filled below: both replacements
}
DESCRIPTIONS["both named more widely"] = {**DESCRIPTIONS["Event named more widely"],
                                          **DESCRIPTIONS["Product named more widely"]}


def misc_items(data: Path) -> list[dict]:
    """The MISC gold mentions of the two dev sets (``run.prepare_twitter``'s gold, WNUT-16's product, movie, tvshow
    and other mapped to MISC) in a fixed order, with their post's text."""
    from bench.graph_quality.run import prepare_twitter

    items = []
    for entity_set in DEV_SETS:
        tw = prepare_twitter(data, None, entity_set)
        texts = {p.id: p.text for p in tw["posts"]}
        for pid, a, b, t in sorted(tw["gold"]):
            if "MISC" in t.split("|"):
                items.append({"item": len(items) + 1, "post_id": pid, "start": a, "end": b, "span": texts[pid][a:b],
                              "text": texts[pid]})
    return items


def listing(items: list[dict]) -> str:
    """What a reader reads: the span and its post, nothing else (no corpus label, no model output)."""
    return "".join(f"[{x['item']}] span: {x['span']}\n    post: {x['text']}\n\n" for x in items)


def read_labels() -> dict[tuple[str, int, int], tuple[str, ...]]:
    """(post_id, start, end) -> the readers' labels of the dev sets' MISC mentions, in reader order."""
    return misc_type_labels("dev")


def fine_gold(gold: set, ignore: set, labels: dict) -> tuple[set, set, Counter]:
    """The coarse gold of one dev set with its MISC mentions re-typed by the readers' labels: both say Event or
    both Product -> EVENT / PRODUCT; both Other -> out of the gold; they disagree -> an ignored region. Refuses
    a MISC mention no reader labelled."""
    fine, ignored, counts = set(), set(ignore), Counter()
    for pid, s, e, t in sorted(gold):  # sorted: the counts print in one order every run
        if "MISC" not in t.split("|"):
            fine.add((pid, s, e, t))
            continue
        said = labels.get((pid, s, e))
        if not said:
            raise KeyError(f"no reader's label for the MISC mention {(pid, s, e)}")
        if len(set(said)) > 1:
            ignored.add((pid, s, e))
            counts["readers disagree (not scored)"] += 1
        elif said[0] == "Other":
            counts["Other (out of the gold)"] += 1
        else:
            fine.add((pid, s, e, said[0].upper()))
            counts[said[0]] += 1
    return fine, ignored, counts


def fine_scores(scored: dict, decided: list, names: list[str], gold: set, ignore: set) -> dict:
    """Fine typed scores of the mentions written under ``decided`` against ``fine_gold``'s gold, with how the
    readers' Event and Product mentions were typed (or not: abstained, or their exact span never detected)."""
    from bench.graph_quality.scoring import score_entities

    pred = written(scored, decided, names, lambda name: _TO_FINE.get(name, name), ignore)
    result = score_entities(pred, gold, FINE_TYPES)
    typed_as = {(pid, s, e): t for pid, s, e, t in pred}
    detected = set(scored["spans"])
    confusion = {g: Counter(typed_as.get((pid, s, e), "abstained" if (pid, s, e) in detected else "not detected")
                            for pid, s, e, t in sorted(gold) if t == g) for g in ("EVENT", "PRODUCT")}
    t = result["typed"]
    return {"typed_precision": t["precision"], "typed_recall": t["recall"], "typed_f1": t["f1"],
            "typed_f0_5": t["f0_5"],
            "per_type": {k: result["per_type"][k] for k in ("EVENT", "PRODUCT")},
            "typed_as": {g: dict(c.most_common()) for g, c in confusion.items()}}


def with_descriptions(ontology, replaced: dict[str, str]):
    """The label set with the descriptions of ``replaced``'s types replaced."""
    types = tuple(replace(e, description=replaced.get(e.name, e.description)) for e in ontology.entity_types)
    return replace(ontology, entity_types=types)


def agreement(labels: dict) -> dict:
    """Cohen's kappa of the two readers over the items both labelled, and their agreed counts."""
    pairs = [v for v in labels.values() if len(v) == 2]
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in LABELS) / n / n
    return {"items": n, "agreed": sum(a == b for a, b in pairs), "kappa": round((observed - expected) / (1 - expected), 3),
            "agreed_by_label": dict(Counter(a for a, b in pairs if a == b).most_common())}


def choose(rows: dict[str, dict[str, dict]]) -> str:
    """The module docstring's rule over ``rows``: dev set -> variant -> {"coarse": ..., "fine": ...}."""
    variants = list(next(iter(rows.values())))
    fair = [v for v in variants if all(r[v][k]["typed_f1"] >= r["shipped"][k]["typed_f1"]
                                       for r in rows.values() for k in ("coarse", "fine"))]
    return max(fair, key=lambda v: (round(sum(r[v]["fine"]["typed_f0_5"] for r in rows.values()), 2), v == "shipped"))


MIN_SCORE_GRID = (-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25)


def operating_point(by_score: dict[float, dict[str, dict]]) -> float:
    """``by_score``: min_score -> dev set -> {"coarse": ...}; the min_score of the best summed coarse typed F1
    (ties: the higher min_score)."""
    return max(by_score, key=lambda m: (round(sum(r["coarse"]["typed_f1"] for r in by_score[m].values()), 2), m))


def compare_typers(data: Path, ontology, names: list[str], checkpoints: dict[str, str], labels: dict,
                   min_gap: float = 0.25) -> dict:
    """Each typer of ``checkpoints`` (label -> path, "" the shipped one) over ``MIN_SCORE_GRID`` and its calibrated
    ``min_score`` on both dev sets; its operating point; the verdict of the module docstring's rule for the second
    typer against the first."""
    from bench.graph_quality.run import prepare_twitter
    from bench.graph_quality.type_rules import scored_mentions
    from extraction.pipeline import extractor_for
    from extraction.zero_shot import agree_on_types

    golds = {}
    for entity_set in DEV_SETS:
        tw = prepare_twitter(data, None, entity_set)
        golds[entity_set] = fine_gold(tw["gold"], tw["ignore"], labels)[:2]
    typers = {}
    for label, path in checkpoints.items():
        extractor = extractor_for("mg-vmoe", entity_checkpoint=path)
        calibrated = extractor.min_type_score
        scored = {s: scored_mentions(data, s, extractor, ontology) for s in DEV_SETS}
        by_score: dict[float, dict] = {}
        for m in sorted({*MIN_SCORE_GRID, round(calibrated, 3)}):
            by_score[m] = {}
            for s in DEV_SETS:
                decided = agree_on_types(scored[s]["keys"], scored[s]["raw"], m, parents=ontology.parent_indices(),
                                         min_gap=min_gap)
                by_score[m][s] = {"coarse": score_decisions(scored[s], decided, names),
                                  "fine": fine_scores(scored[s], decided, names, *golds[s])}
        typers[label] = {"checkpoint": path or "shipped", "calibrated_min_score": round(calibrated, 3),
                         "by_min_score": by_score, "operating_point": operating_point(by_score)}
    at = {k: t["by_min_score"][t["operating_point"]] for k, t in typers.items()}
    a, b = at.values()
    replaces = all(b[s][k]["typed_f1"] >= a[s][k]["typed_f1"] for s in DEV_SETS for k in ("coarse", "fine"))
    return {"min_gap": min_gap, "typers": typers, "at_operating_points": at,
            "challenger_replaces_shipped": replaces}


def render_comparison(result: dict) -> str:
    labels = list(result["typers"])
    lines = ["# Two typers on the development sets, each at its own operating point", "",
             f"`{result['command']}` — {result['when']}, commit `{result['commit']}`, wall {result['wall_s']} s. "
             "Protocol and the rule: `bench/graph_quality/event_product.py` (*Typers compared at their own "
             f"operating points*); gap {result['min_gap']} for both.", "",
             f"**Verdict: {labels[1]} {'replaces' if result['challenger_replaces_shipped'] else 'does not replace'} "
             f"{labels[0]}.**", "",
             "| typer | min_score | dev set | coarse typed P / R / F1 | fine typed P / R / F1 | Event P / R / F1 | "
             "Product P / R / F1 |", "|---|---|---|---|---|---|---|"]
    for label, t in result["typers"].items():
        for m, rows in t["by_min_score"].items():
            mark = (" **(operating point)**" if float(m) == t["operating_point"] else "") + (
                " (calibrated)" if float(m) == t["calibrated_min_score"] else "")
            for s, r in rows.items():
                c, f = r["coarse"], r["fine"]
                ev, pr = f["per_type"]["EVENT"], f["per_type"]["PRODUCT"]
                lines.append(f"| {label} | {m}{mark} | {s} | {c['typed_precision']} / {c['typed_recall']} / "
                             f"{c['typed_f1']} | {f['typed_precision']} / {f['typed_recall']} / {f['typed_f1']} | "
                             f"{ev['precision']} / {ev['recall']} / {ev['f1']} | {pr['precision']} / {pr['recall']} / "
                             f"{pr['f1']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.graph_quality.run import prepare_twitter
    from bench.graph_quality.type_rules import dev_typer, scored_mentions
    from extraction.zero_shot import agree_on_types

    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.event_product", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--listing", type=Path, metavar="FILE", help="write what the readers read and stop")
    parser.add_argument("--entity-checkpoint", default="", metavar="PATH",
                        help="MG-VMoE entity checkpoint to measure (default the shipped one)")
    parser.add_argument("--variants", nargs="+", choices=list(DESCRIPTIONS), default=list(DESCRIPTIONS),
                        help="description variants to run (default all)")
    parser.add_argument("--compare", metavar="PATH", default="",
                        help="compare this entity checkpoint with the shipped one, each at its own operating point")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.listing:
        data = research_data(*(ENTITY_SETS[s] for s in DEV_SETS))
        if data is not None:
            args.listing.write_text(listing(misc_items(data)))
        return 0
    setup = dev_typer(args.threads, args.entity_checkpoint)
    if setup is None:
        return 0
    data, ontology, names, extractor = setup
    labels = read_labels()
    if args.compare:
        result = compare_typers(data, ontology, names, {"met-tweets (shipped)": "", args.compare: args.compare}, labels)
        result.update({**probe_stamp(t0),
                       "command": f"python -m bench.graph_quality.event_product --compare {args.compare}"})
        write_result(args.out, "event_product_typers", result, render_comparison(result))
        return 0
    parents = ontology.parent_indices()
    rows: dict[str, dict] = {}
    gold_counts = {}
    for entity_set in DEV_SETS:
        tw = prepare_twitter(data, None, entity_set)
        gold, ignore, gold_counts[entity_set] = fine_gold(tw["gold"], tw["ignore"], labels)
        rows[entity_set] = {}
        for variant in args.variants:
            replaced = DESCRIPTIONS[variant]
            scored = scored_mentions(data, entity_set, extractor, with_descriptions(ontology, replaced))
            decided = agree_on_types(scored["keys"], scored["raw"], extractor.min_type_score, parents=parents,
                                     min_gap=extractor.type_min_gap)
            rows[entity_set][variant] = {"coarse": score_decisions(scored, decided, names),
                                         "fine": fine_scores(scored, decided, names, gold, ignore)}
    result = {**probe_stamp(t0), "readers": agreement(labels),
              "readers_train_labels": agreement(misc_type_labels("train")),
              "entity_checkpoint": args.entity_checkpoint or "shipped", "min_score": extractor.min_type_score,
              "min_gap": extractor.type_min_gap,
              "gold_misc": {s: dict(c) for s, c in gold_counts.items()},
              "descriptions": DESCRIPTIONS, "rows": rows, "chosen": choose(rows)}
    write_result(args.out, "event_product", result, render(result))
    return 0


def render(result: dict) -> str:
    r = result["readers"]
    lines = ["# Event and Product on the development sets: two readers' labels, the typer, a description probe", "",
             f"`python -m bench.graph_quality.event_product` — {result['when']}, commit `{result['commit']}`, wall "
             f"{result['wall_s']} s; entity checkpoint: {result.get('entity_checkpoint', 'shipped')} (`min_score` "
             f"{result.get('min_score', 0):.3f}, `min_gap` {result.get('min_gap')}). Gold, protocol and the choice rule: "
             "`bench/graph_quality/event_product.py`.", "",
             f"**Readers**: {r['agreed']} of {r['items']} MISC mentions labelled alike, Cohen's kappa {r['kappa']}; "
             f"agreed: {r['agreed_by_label']}. Per dev set: "
             + "; ".join(f"{s} {c}" for s, c in result["gold_misc"].items()) + "."
             + (f" The train files' labels (`models/annotations/misc-types-train*.json`, what the typer trains on): "
                f"{t['agreed']} of {t['items']} alike, kappa {t['kappa']}; agreed: {t['agreed_by_label']}."
                if (t := result.get("readers_train_labels")) else ""), "",
             f"**Chosen by the rule: {result['chosen']}**", "",
             "| dev set | descriptions | coarse typed F1 | fine typed P / R / F1 | fine F0.5 | Event P / R / F1 | "
             "Product P / R / F1 | gold Event typed as | gold Product typed as |", "|---|---|---|---|---|---|---|---|---|"]
    for entity_set, variants in result["rows"].items():
        for variant, v in variants.items():
            f = v["fine"]
            ev, pr = f["per_type"]["EVENT"], f["per_type"]["PRODUCT"]
            lines.append(
                f"| {entity_set} | {variant} | {v['coarse']['typed_f1']} | {f['typed_precision']} / {f['typed_recall']}"
                f" / {f['typed_f1']} | {f['typed_f0_5']} | {ev['precision']} / {ev['recall']} / {ev['f1']} | "
                f"{pr['precision']} / {pr['recall']} / {pr['f1']} | {f['typed_as']['EVENT']} | {f['typed_as']['PRODUCT']} |")
    lines += ["", "Descriptions probed (the shipped ones are `ontology/ontology.yaml`'s):", ""]
    lines += [f"- {variant}: {json.dumps(d) if d else 'as shipped'}" for variant, d in result["descriptions"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
