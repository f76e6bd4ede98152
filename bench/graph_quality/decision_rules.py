"""Choosing the relation stage's decision rule on the development protocol, never on test.

    MMKG_DATA=/work/shared/data python -m bench.graph_quality.decision_rules [--out DIR]

The MNRE ``dev`` part (``run.MNRE_PARTS``: the val file's posts, scored against the seed-0 split's 7
*validation* relations; no test relation, no post whose text is in the test file) goes through the real
stages once - ``EntityDetector``, the shipped MG-VMoE typer, every candidate pair's raw relation scores under
the headline (typed) ontology - and each decision rule of a small grid is then applied to those scores in
Python, exactly as ``MGVMoEExtractor.extract_relations`` and the loader would (best allowed relation, the
better reading of a pair, no self-loop, one triple per entity pair and post), and scored by the graph-quality
benchmark's own ``scoring.score_relations`` (``name`` matching); ``funnel`` says at which stage each gold relation
is lost under the calibrated threshold alone (the rule before ``thresholds.decision``). A rule is:

- ``margin``: raw score needed above the checkpoint's calibrated ``min_score`` (0: the calibrated threshold alone);
- ``per_post``: at most this many relations per post, the highest raw scores first (``None``: no cap);
- ``min_probability``: the relation's softmax probability over the ontology's relations (its written
  ``score``) needed, i.e. how clearly this pair reads as *this* relation rather than another one;
- ``min_gap``: raw points by which the relation must beat every other relation of the ontology (allowed or not):
  the same question on raw scores, so the number of other labels does not move it
  (``extraction.mg_vmoe.RelationRule``).

**Chosen** (``choose_rule``): of the rules the relation stage implements (margin and ``min_gap``), the one with
the best micro F0.5 among those whose precision is at least the calibrated threshold alone's (precision first, then recall; ties: fewer
triples); ``bench.graph_quality`` then measures it on the test relations.
Writes ``relation_decision_rules.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from bench.graph_quality.run import RESULTS_DIR, HEADLINE_ONTOLOGY, prepare_mnre, research_data
from bench.graph_quality.scoring import SYMMETRIC_RELATIONS, TripleInstance, score_relations

MARGINS = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
PER_POST = (None, 1, 2)
MIN_PROBABILITY = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8)
MIN_GAP = (None, 0.5, 1.0, 1.5, 2.0, 3.0)
TABLE_ROWS = 40


def scored_candidates(mnre: dict, relation_checkpoint: str = "") -> tuple[list[dict], float, dict]:
    """Every candidate pair of the dev posts under the headline ontology, with its raw relation scores."""
    import torch

    from extraction.detection import EntityDetector
    from models.modeling import score_gap
    from extraction.pipeline import extractor_for
    from mmkg.identity import entity_id, entity_name

    onto = mnre["ontologies"][HEADLINE_ONTOLOGY]
    posts = {p.id: p for p in mnre["posts"]}
    texts = {p.id: p.text for p in mnre["posts"]}
    mentions = EntityDetector().detect(mnre["posts"])
    extractor = extractor_for("mg-vmoe", "", relation_checkpoint)
    typed = extractor.type_mentions(posts, mentions, onto)
    candidates, raw = extractor.relation_scores(posts, typed, onto)  # the stage's own candidates and scores
    names = [r.name for r in onto.relation_types]
    extractor.forget_posts()
    out = []
    for (head, tail, allowed), row, p in zip(candidates, raw, raw.softmax(-1)):
        best = max((names.index(r.name) for r in allowed), key=lambda i: float(row[i]))
        hn, tn = entity_name(head.mention, texts), entity_name(tail.mention, texts)
        out.append({
            "allowed": {r.name: float(row[names.index(r.name)]) for r in allowed},
            "post_id": head.mention.post_id, "relation": names[best], "raw": float(row[best]), "p": float(p[best]),
            "gap": float(score_gap(row[None], torch.tensor([best]))[0]),
            "spans": tuple(sorted([(head.mention.start, head.mention.end), (tail.mention.start, tail.mention.end)])),
            "head_id": entity_id(hn, head.entity_type), "tail_id": entity_id(tn, tail.entity_type),
            "head_name": hn, "tail_name": tn,
            "head_span": (head.mention.start, head.mention.end), "tail_span": (tail.mention.start, tail.mention.end),
        })
    stage = {"mentions": len(mentions), "typed": sum(t.entity_type != "Other" for t in typed),
             "candidate_pairs": len(candidates),
             "entities_by_post": _entities_by_post(typed, texts)}
    return out, float(extractor.mre.thresholds["min_score"]), stage


def _entities_by_post(typed, texts) -> dict:
    from mmkg.identity import entity_name

    out: dict = {}
    for tm in typed:
        out.setdefault(tm.mention.post_id, []).append((entity_name(tm.mention, texts), tm.entity_type))
    return out


#: Where a gold relation annotation is lost on its way into the graph, in stage order.
FUNNEL = ("an end not detected (no entity of that name in the post)", "an end abstained (typed Other)",
          "the ends' types do not allow the relation", "another allowed relation scores higher",
          "under the calibrated threshold", "kept")


def funnel(cands: list[dict], threshold: float, mnre: dict, entities_by_post: dict, to_name: dict) -> dict:
    """For each gold annotation of a scored relation: the first stage that loses it (``FUNNEL``), under the calibrated threshold alone
    rule (name matching; either reading for the symmetric relations)."""
    from collections import Counter

    by_pair: dict = {}
    for c in cands:
        by_pair.setdefault((c["post_id"], c["head_name"], c["tail_name"]), []).append(c)
    lost = Counter({stage: 0 for stage in FUNNEL})
    for gp in mnre["gold_pairs"]:
        if gp.scope != "test":
            continue
        ents = entities_by_post.get(gp.post_id, [])
        for a in gp.annotations:
            heads = [t for n, t in ents if n == a.head_name]
            tails = [t for n, t in ents if n == a.tail_name]
            rel = to_name[a.relation]
            readings = [(a.head_name, a.tail_name)] + ([(a.tail_name, a.head_name)] if a.relation in SYMMETRIC_RELATIONS else [])
            cs = [c for r in readings for c in by_pair.get((gp.post_id, *r), [])]
            if not heads or not tails:
                stage = FUNNEL[0]
            elif all(t == "Other" for t in heads) or all(t == "Other" for t in tails):
                stage = FUNNEL[1]
            elif not any(rel in c["allowed"] for c in cs):
                stage = FUNNEL[2]
            elif not any(c["relation"] == rel for c in cs):
                stage = FUNNEL[3]
            elif not any(c["relation"] == rel and c["raw"] >= threshold for c in cs):
                stage = FUNNEL[4]
            else:
                stage = FUNNEL[5]
            lost[stage] += 1
    return dict(lost)


def apply_rule(cands: list[dict], threshold: float, margin: float, per_post: int | None, min_probability: float,
               to_mnre: dict, min_gap: float | None = None) -> list[TripleInstance]:
    """The triple instances a graph would hold under one rule (see the module docstring)."""
    kept = [c for c in cands if c["raw"] >= threshold + margin and c["p"] >= min_probability
            and (min_gap is None or c["gap"] >= min_gap)]
    best: dict = {}  # one reading per unordered mention pair: the higher raw score
    for c in kept:
        if c["head_id"] == c["tail_id"]:
            continue  # the loader never writes a self-loop (so it takes no place under a per-post cap)
        key = (c["post_id"], c["spans"])
        if key not in best or c["raw"] > best[key]["raw"]:
            best[key] = c
    by_post: dict = {}
    for c in best.values():
        by_post.setdefault(c["post_id"], []).append(c)
    instances, seen = [], set()
    for pid, cs in by_post.items():
        cs.sort(key=lambda c: -c["raw"])
        for c in cs[:per_post] if per_post else cs:
            rel = to_mnre[c["relation"]]
            ends = (c["head_id"], c["tail_id"])
            key = (pid, rel, tuple(sorted(ends)) if rel in SYMMETRIC_RELATIONS else ends)
            if key in seen:
                continue
            seen.add(key)
            instances.append(TripleInstance(pid, rel, c["head_id"], c["tail_id"], (c["head_span"],),
                                            (c["tail_span"],), 1, c["p"], c["head_name"], c["tail_name"]))
    return instances


def choose_rule(rules: list[dict], today: dict) -> dict:
    """Of the rules the relation stage implements (``extraction.mg_vmoe.RelationRule``: a margin on the calibrated
    threshold and a minimum gap; per-post caps and probability minimums are measured, not implemented: a softmax
    probability moves with the number of labels), the one with the best micro F0.5 among those whose precision is
    at least ``today``'s (ties: fewer triples)."""
    fair = [r for r in rules if r["precision"] >= today["precision"] and r["per_post"] is None
            and r["min_probability"] == 0]
    return min(fair, key=lambda r: (-r["f0_5"], r["instances"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.decision_rules", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mnre-part", choices=["dev", "dev-wide"], default="dev",
                        help="dev (default) or dev-wide: the 3 validation relations mnre-pipeline-wide leaves unseen")
    parser.add_argument("--relation-checkpoint", default="", metavar="PATH", help="default the shipped one")
    args = parser.parse_args(argv)
    data = research_data()
    if data is None:
        return 0
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    mnre = prepare_mnre(data, None, args.mnre_part)
    from bench.graph_quality.checkpoints import relation_checkpoint_for

    # the dev relations are the seed-0 split's validation relations: a checkpoint that trained on them is refused
    checkpoint = relation_checkpoint_for(mnre["test_relations"], args.relation_checkpoint)
    cands, threshold, stage = scored_candidates(mnre, checkpoint)
    from bench.graph_quality.scoring import relation_name

    to_mnre = {relation_name(r): r for r in mnre["test_relations"]}
    lost = funnel(cands, threshold, mnre, stage.pop("entities_by_post"), {r: relation_name(r) for r in mnre["test_relations"]})
    rows = []
    for margin, per_post, min_p, gap in itertools.product(MARGINS, PER_POST, MIN_PROBABILITY, MIN_GAP):
        inst = apply_rule(cands, threshold, margin, per_post, min_p, to_mnre, gap)
        s = score_relations(inst, mnre["gold_pairs"], mnre["test_relations"], "name")
        rows.append({"margin": margin, "per_post": per_post, "min_probability": min_p, "min_gap": gap,
                     "instances": len(inst), "on_annotated": s["on_annotated_pairs"], "correct": s["correct"],
                     "none_pair": s["relation_on_none_pair"], **s["micro"]})
    rows.sort(key=lambda r: (-r["f0_5"], r["instances"]))
    today = next(r for r in rows if r["margin"] == 0 and r["per_post"] is None and r["min_probability"] == 0
                 and r["min_gap"] is None)
    chosen = choose_rule(rows, today)
    res = {"benchmark": "relation_decision_rules", "command": "python -m bench.graph_quality.decision_rules "
           + " ".join(argv if argv is not None else sys.argv[1:]), "protocol": mnre["summary"]["part_description"],
           "relation_checkpoint": checkpoint or "shipped", "relations": mnre["test_relations"],
           "threshold_min_score": threshold, "stage": stage, "scored_posts": mnre["summary"]["scored_posts"],
           "gold": mnre["summary"]["gold"]["pairs_by_scope"], "funnel": lost, "today": today, "best": rows[0], "chosen": chosen, "rules": rows,
           "wall_s": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "relation_decision_rules" + ("" if args.mnre_part == "dev" else f"_{args.mnre_part}")
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    head = ["margin", "per_post", "min_probability", "min_gap", "instances", "on_annotated", "correct", "none_pair",
            "precision", "recall", "f1", "f0_5"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    shown = rows[:TABLE_ROWS] + [r for r in (today, chosen) if r not in rows[:TABLE_ROWS]]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in shown]
    md = (f"# Relation decision rules on the dev protocol\n\n`{res['command'].strip()}` (relation checkpoint "
          f"{res['relation_checkpoint']}): "
          f"{res['protocol']}. {res['scored_posts']} posts, gold pairs by scope {res['gold']}; stage {stage}; "
          f"calibrated min_score {threshold:.3f}. Wall {res['wall_s']} s.\n\n"
          "**Where the gold relations go** (the calibrated threshold alone; each annotation counted at the first stage that loses it):\n\n"
          "| stage | gold annotations |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in lost.items())
          + f"\n\n**Chosen** (of the rules the relation stage implements, margin and min_gap, the best F0.5 with precision at least the calibrated threshold alone's): margin {chosen['margin']}, per_post "
            f"{chosen['per_post']}, min_probability {chosen['min_probability']}, min_gap {chosen['min_gap']}: P / R / F0.5 "
            f"{chosen['precision']:.1f} / {chosen['recall']:.1f} / {chosen['f0_5']:.1f} against the calibrated threshold alone's "
            f"{today['precision']:.1f} / {today['recall']:.1f} / {today['f0_5']:.1f}."
          + f"\n\n**Rules** ({len(rows)}), sorted by micro F0.5 (name matching); the first {TABLE_ROWS}, then the calibrated threshold alone "
            "and the chosen one where they are not among them (all of them: the JSON):\n\n" + "\n".join(lines) + "\n")
    (args.out / f"{stem}.md").write_text(md, encoding="utf-8")
    print(md[:4000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
