"""Which of the graph's relation triples does their post state? A read of every triple instance, beside MNRE's gold.

    MMKG_DATA=/work/shared/data python -m bench.graph_quality.audit [--mnre-part test|dev|product] [--list] [--out DIR]

MNRE's annotation is not a complete reading of each tweet: a pair is labelled with one relation of MNRE's set, or
``None``, and many ``None`` pairs are facts the tweet states (the development protocol's 25 relations written on
``None`` pairs include "Chelsea midfielder Tiemoue Bakayoko" -> member_of, "@Giants: Coach Pat Shurmur ..." ->
member_of). And the graph writes triples on pairs MNRE never annotated (an end that is no gold entity), which its
precision does not count at all. So ``bench.graph_quality``'s triple precision is what MNRE's labels say, not what a
data team reading the graph would find. This reads every triple instance the graph holds for the part - the
relation stage's output under the checkpoint's decision rule, one reading per mention pair, no self-loop, one
instance per (post, relation, entity pair), as ``bench.graph_quality.decision_rules.apply_rule`` rebuilds it from
the stage's own candidates and raw scores - against a file of verdicts a person wrote, one per instance
(``audits/mnre-<part>.json``), and reports, beside MNRE's verdict where it has one, the share the post states.

**The criterion** (what a verdict ``stated: true`` means): a reader of the post alone, knowing the relation's
description (``models.label_descriptions``) and nothing else about the world, would write this triple, in this
direction (either for a symmetric relation), between these two entities as the graph names them. Clear implication
counts ("First goal under Maurizio Sarri ... 1-0 Chelsea": Sarri manages Chelsea); a handle that posts speaks for its
owner. Not stated: a fact true in the world that the post does not say; a triple whose end is not the entity the post
means (a junk or cut mention, e.g. ``dj`` for "DJ Tomas Reyes") or is of another kind than the relation takes (a person
typed as an organization). One reader (the developer who wrote the verdicts, at the commit named in the file), so
the audited share is a second opinion beside MNRE's, not a replacement: the headline stays MNRE's. A second reader's
verdicts (``audits/mnre-<part>.reader2.json``, written from the same listing and criterion without seeing the first
reader's) are reported beside them, with the two readers' agreement (Cohen's kappa) and the share both call stated.

No tweet text is stored (research data stays out of the repository): a verdict names its instance by the post id
(``scoring.mnre_post_id``, a hash of the text), the relation and the two entity names, with a short reason. ``--list``
prints the instances with their post text (to write or check verdicts); without it an instance with no verdict is
listed as unread and the command exits 1 (verdicts on instances the graph no longer holds are kept: they compare it
with the graph they were written for). Writes ``triple_audit_<part>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from bench.graph_quality.run import RESULTS_DIR, prepare_mnre, research_data

AUDITS = Path(__file__).resolve().parent / "audits"


def instances(part: str) -> tuple[list, dict, dict]:
    """The graph's triple instances of ``part`` under the shipped relation checkpoint and its decision rule, the
    posts' texts, and the MNRE data (``prepare_mnre``)."""
    from bench.graph_quality.checkpoints import relation_checkpoint_for
    from bench.graph_quality.decision_rules import apply_rule, scored_candidates
    from bench.graph_quality.scoring import relation_name
    from mmkg.settings import research_data_dir

    mnre = prepare_mnre(research_data_dir(), None, part)
    checkpoint = relation_checkpoint_for(mnre["test_relations"], "")
    cands, threshold, _ = scored_candidates(mnre, checkpoint)
    decision = _decision(checkpoint)
    to_mnre = {relation_name(r): r for r in mnre["test_relations"]}
    found = apply_rule(cands, threshold, float(decision.get("margin", 0.0)), None, 0.0, to_mnre, decision.get("min_gap"))
    return found, {p.id: p.text for p in mnre["posts"]}, mnre


def _decision(checkpoint: str) -> dict:
    from models.checkpoint import DEFAULT_RELATION_CHECKPOINT, read_verified_card

    card = read_verified_card(Path(checkpoint) if checkpoint else DEFAULT_RELATION_CHECKPOINT)
    return card["thresholds"].get("decision") or {}


def key(post_id: str, relation: str, head: str, tail: str) -> str:
    return f"{post_id}|{relation}|{head}|{tail}"


def by_instance(audit: dict) -> dict[str, dict]:
    """A verdict file's verdicts (``audits/*.json``: ``{"reader", "criterion", "verdicts": [...]}``) by instance ``key``."""
    return {key(v["post_id"], v["relation"], v["head"], v["tail"]): v for v in audit["verdicts"]}


def mnre_verdicts(found: list, gold_pairs: list) -> list[dict]:
    """MNRE's verdict on each instance (``scoring.judge_instance``, name matching: the headline's)."""
    from bench.graph_quality.scoring import judge_instance

    by_post: dict = {}
    for g in gold_pairs:
        by_post.setdefault(g.post_id, []).append(g)
    return [judge_instance(i, by_post.get(i.post_id, []), "name") for i in found]


def summarise(rows: list[dict], field: str = "stated") -> dict:
    """Counts and shares per group of instances: all, MNRE-annotated (split by MNRE's verdict), not annotated;
    ``field`` is the verdict read (``stated``: the first reader's, ``stated_2``: the second's, ``stated_both``)."""
    groups = {
        "all instances": rows,
        "on MNRE-annotated pairs": [r for r in rows if r["mnre_where"] == "annotated"],
        "... MNRE: correct": [r for r in rows if r["mnre_verdict"] == "correct"],
        "... MNRE: wrong (relation on a None pair, wrong relation or direction)": [
            r for r in rows if r["mnre_where"] == "annotated" and r["mnre_verdict"] != "correct"],
        "on pairs MNRE did not annotate or annotated outside the ontology": [
            r for r in rows if r["mnre_where"] != "annotated"],
    }
    out = {}
    for name, rs in groups.items():
        read = [r for r in rs if r.get(field) is not None]
        stated = sum(r[field] for r in read)
        out[name] = {"instances": len(rs), "read": len(read), "stated": stated,
                     "stated_pct": round(100 * stated / len(read), 1) if read else None}
    annotated = groups["on MNRE-annotated pairs"]
    out["MNRE precision on annotated pairs"] = {
        "correct": len(groups["... MNRE: correct"]), "instances": len(annotated),
        "pct": round(100 * len(groups["... MNRE: correct"]) / len(annotated), 1) if annotated else None}
    return out


def agreement(rows: list[dict]) -> dict | None:
    """How often the two readers agree on the instances both read, and Cohen's kappa (agreement beyond what their
    own rates of ``stated`` would give by chance)."""
    both = [(r["stated"], r["stated_2"]) for r in rows if r.get("stated") is not None and r.get("stated_2") is not None]
    if not both:
        return None
    n = len(both)
    agree = sum(a == b for a, b in both)
    p1, p2 = sum(a for a, _ in both) / n, sum(b for _, b in both) / n
    chance = p1 * p2 + (1 - p1) * (1 - p2)
    kappa = (agree / n - chance) / (1 - chance) if chance < 1 else 1.0
    return {"instances": n, "agree": agree, "agree_pct": round(100 * agree / n, 1), "cohen_kappa": round(kappa, 3),
            "stated_by_first_only": sum(a and not b for a, b in both), "stated_by_second_only": sum(b and not a for a, b in both)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.audit", description=__doc__.split("\n")[0])
    parser.add_argument("--mnre-part", choices=["test", "dev", "product"], default="test")
    parser.add_argument("--list", action="store_true", help="print every instance with its post text and stop")
    parser.add_argument("--verdicts", type=Path, default=None, metavar="FILE",
                        help="default audits/mnre-<part>.json next to this module")
    parser.add_argument("--second", type=Path, default=None, metavar="FILE",
                        help="a second reader's verdicts, written without seeing the first's; default "
                             "audits/mnre-<part>.reader2.json when it exists")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    args = parser.parse_args(argv)
    if research_data() is None:
        return 0
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    found, texts, mnre = instances(args.mnre_part)
    judged = mnre_verdicts(found, mnre["gold_pairs"])
    if args.list:
        for i, j in sorted(zip(found, judged), key=lambda x: (x[1]["where"], x[0].relation, x[0].post_id)):
            print(json.dumps({"post_id": i.post_id, "relation": i.relation, "head": i.head_name, "tail": i.tail_name,
                              "mnre": j["verdict"] or j["where"], "text": texts[i.post_id]}, ensure_ascii=False))
        return 0
    path = args.verdicts or AUDITS / f"mnre-{args.mnre_part}.json"
    audit = json.loads(path.read_text(encoding="utf-8"))
    verdicts = by_instance(audit)
    second_path = args.second or AUDITS / f"mnre-{args.mnre_part}.reader2.json"
    second = json.loads(second_path.read_text(encoding="utf-8")) if second_path.is_file() else None
    verdicts_2 = by_instance(second) if second else {}
    rows = []
    for i, j in zip(found, judged):
        k = key(i.post_id, i.relation, i.head_name, i.tail_name)
        v, v2 = verdicts.get(k), verdicts_2.get(k)
        row = {"post_id": i.post_id, "relation": i.relation, "head": i.head_name, "tail": i.tail_name,
               "mnre_where": j["where"], "mnre_verdict": j["verdict"],
               "stated": None if v is None else bool(v["stated"]), "why": None if v is None else v["why"]}
        if second:
            row["stated_2"] = None if v2 is None else bool(v2["stated"])
            row["why_2"] = None if v2 is None else v2["why"]
            row["stated_both"] = None if v is None or v2 is None else bool(v["stated"]) and bool(v2["stated"])
        rows.append(row)
    unread = [r for r in rows if r["stated"] is None]
    stale = sorted(set(verdicts) - {key(r["post_id"], r["relation"], r["head"], r["tail"]) for r in rows})
    summary = summarise(rows)
    second_summary = {"reader": second.get("reader"), "summary": summarise(rows, "stated_2"),
                      "stated_by_both": summarise(rows, "stated_both"), "agreement": agreement(rows),
                      "verdicts": str(second_path), "all_verdicts": _all_verdicts(verdicts, verdicts_2)} if second else None
    res = {"benchmark": "triple_audit", "part": args.mnre_part, "part_description": mnre["summary"]["part_description"],
           "command": "python -m bench.graph_quality.audit " + " ".join(argv if argv is not None else sys.argv[1:]),
           "verdicts": str(path.relative_to(Path(__file__).resolve().parents[2])) if path.is_relative_to(
               Path(__file__).resolve().parents[2]) else str(path),
           "reader": audit.get("reader"), "criterion": audit.get("criterion"), "summary": summary,
           "second_reader": second_summary,
           "unread": len(unread), "verdicts_on_instances_no_longer_in_the_graph": len(stale), "instances": rows,
           "wall_s": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"triple_audit_{args.mnre_part}"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["| instances | count | read | stated by the post | share stated |", "|---|---|---|---|---|"]
    for name, s in summary.items():
        if "read" in s:
            lines.append(f"| {name} | {s['instances']} | {s['read']} | {s['stated']} | "
                         f"{'–' if s['stated_pct'] is None else s['stated_pct']} |")
    m = summary["MNRE precision on annotated pairs"]
    by_rel = Counter((r["relation"], r["stated"]) for r in rows)
    rel_lines = ["| relation | instances | stated | not stated |", "|---|---|---|---|"]
    for rel in sorted({r["relation"] for r in rows}):
        rel_lines.append(f"| `{rel}` | {by_rel[(rel, True)] + by_rel[(rel, False)] + by_rel[(rel, None)]} | "
                         f"{by_rel[(rel, True)]} | {by_rel[(rel, False)]} |")
    md = (f"# Relation triples the post states: a read of every instance beside MNRE's gold\n\n"
          f"`{res['command'].strip()}` — {res['part_description']}. Verdicts: `{res['verdicts']}` ({res['reader']}). "
          f"Definitions and the criterion: `bench/graph_quality/audit.py`. Wall {res['wall_s']} s.\n\n"
          f"**MNRE's precision on annotated pairs: {m['pct']}% ({m['correct']} / {m['instances']}).** "
          f"**Share of all {summary['all instances']['instances']} instances their post states: "
          f"{summary['all instances']['stated_pct']}%** ({summary['all instances']['stated']} / "
          f"{summary['all instances']['read']} read).\n\n" + "\n".join(lines) + "\n\n" + _second_md(second_summary, summary)
          + "\n".join(rel_lines)
          + "\n\n**Every instance** (MNRE: its verdict, or where the instance lands when MNRE did not score it):\n\n"
          "| post | relation | head | tail | MNRE | stated | why | second reader |\n|---|---|---|---|---|---|---|---|\n"
          + "\n".join(f"| {r['post_id'][:10]} | {r['relation']} | {r['head']} | {r['tail']} | "
                      f"{r['mnre_verdict'] or r['mnre_where']} | {_yes(r['stated'])} | {r['why'] or ''} | "
                      f"{_yes(r.get('stated_2'))} |" for r in sorted(rows, key=lambda r: (r['mnre_where'], r['relation'], r['post_id'])))
          + "\n")
    (args.out / f"{stem}.md").write_text(md, encoding="utf-8")
    print(md.split("**Every instance**")[0])
    if stale:  # kept on purpose: verdicts on what an earlier graph held compare it with today's
        print(f"{len(stale)} verdict(s) on instances this graph no longer holds (kept to compare with the graph they "
              f"were written for)")
    if unread:
        print(f"{len(unread)} instance(s) without a verdict: write them (--list shows the instances)", file=sys.stderr)
        return 1
    return 0


def _all_verdicts(first: dict, second: dict) -> dict:
    """Both readers over every instance both files judge, the graph no longer holds included (the graph the
    verdicts were written for): how many each calls stated, and their agreement."""
    both = sorted(set(first) & set(second))
    rows = [{"stated": bool(first[k]["stated"]), "stated_2": bool(second[k]["stated"])} for k in both]
    return {"instances": len(both), "stated_first": sum(r["stated"] for r in rows),
            "stated_second": sum(r["stated_2"] for r in rows),
            "stated_both": sum(r["stated"] and r["stated_2"] for r in rows), "agreement": agreement(rows)}


def _yes(v: bool | None) -> str:
    return "–" if v is None else "yes" if v else "no"


def _second_md(second: dict | None, first: dict) -> str:
    if not second:
        return ""
    a = second["agreement"]
    rows = ["| instances | first reader: stated | second reader: stated | stated by both |", "|---|---|---|---|"]
    for name, s2 in second["summary"].items():
        if "read" not in s2:
            continue
        b = second["stated_by_both"][name]
        s1 = first[name]
        rows.append(f"| {name} | {s1['stated']} / {s1['read']} ({s1['stated_pct']}) | {s2['stated']} / {s2['read']} "
                    f"({s2['stated_pct']}) | {b['stated']} / {b['read']} ({b['stated_pct']}) |")
    head = f"**A second reader** (`{Path(second['verdicts']).name}`: {second['reader']}): "
    if a:
        head += (f"the two agree on {a['agree']} of {a['instances']} instances ({a['agree_pct']}%), Cohen's kappa "
                 f"{a['cohen_kappa']}; stated by the first only {a['stated_by_first_only']}, by the second only "
                 f"{a['stated_by_second_only']}.")
    v = second["all_verdicts"]
    if v["agreement"]:
        rows.append("")
        rows.append(f"Over all {v['instances']} instances both files judge (the graph they were written for, instances "
                    f"this graph no longer holds included): stated by the first {v['stated_first']}, by the second "
                    f"{v['stated_second']}, by both {v['stated_both']}; agreement {v['agreement']['agree_pct']}%, "
                    f"Cohen's kappa {v['agreement']['cohen_kappa']}.")
    return head + "\n\n" + "\n".join(rows) + "\n\n"


if __name__ == "__main__":
    raise SystemExit(main())
