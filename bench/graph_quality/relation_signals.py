"""Which signal tells a related pair from a co-mentioned one, on the development protocol (issue 15).

    MMKG_DATA=/work/shared/data python -m bench.graph_quality.relation_signals [--mnre-part dev] [--out DIR]

The relation stage writes a pair's best allowed relation when its raw score clears the checkpoint's decision rule
(``extraction.mg_vmoe.RelationRule``). A rule on a score can only be as precise as the score ranks pairs: this
measures, for every candidate pair the real stages produce on an MNRE part (the shipped detector and typer, the
stage's own candidates under the headline ontology of ``bench.graph_quality``; ``dev`` by default: the val file's
posts and the 7 *validation* relations, no test relation and no test-file text), how well each signal ranks the
pairs whose best allowed relation is MNRE's annotation, in its direction (*positive*), above the annotated pairs
where it is not (a ``None`` pair, another relation or the other direction: *negative*), as a ROC AUC (0.5: no
better than chance; pairs MNRE did not annotate, or annotated only outside the scored relations, are left out):

- ``raw``: the stage's raw score of the best allowed relation (what the rule thresholds);
- ``argument prior``: its argument-type part (``MGVMoEConfig.argument_prior``: the head / tail read against the
  relation's argument types), i.e. ``raw`` minus the score with that prior off;
- ``description prior``: its description part (``similarity_prior``: the post against the relation's description);
- ``learned term``: the score with both priors off (the heads' own term; constant when the heads are fixed at
  their prior start, as in the shipped ``mre-mnre``);
- ``post over names alone``: ``raw`` minus the same pair's score with the post reduced to the two names
  (``"head tail"``: contextual calibration - what the rest of the post adds);
- ``description filled in``: cos(post, the relation's description with "the head ..." / "the tail ..." replaced by
  the two names), the text encoder's sentence embeddings (a zero-shot entailment stand-in);
- ``typing confidence``: the lower of the two ends' written type probabilities;
- ``nearness``: minus the characters between the two mentions;
- ``dependency path``: minus the edges of the shortest path between the two mentions in spaCy's parse of the post
  (``en_core_web_sm``, the detector's fallback, over ``extraction.detection.spacy_view``; sentences joined root to
  root): the shortest-dependency-path hypothesis of relation extraction, a signal that reads the post's syntax and
  no relation at all;
- ``same sentence``: 1 when spaCy puts both mentions in one sentence, else 0;
- ``names unlike``: 1 minus the name similarity entity resolution gives the two names (``kg_loader.resolution.
  name_evidence``: 0 for "alpine rail co" / "alpine rail", one entity named twice, which relates to nothing).

Each AUC is given over all annotated candidate pairs and over those the shipped rule keeps (there, what a stricter
rule on that signal could still gain). Writes ``relation_signals.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.graph_quality.run import CREATED_AT, HEADLINE_ONTOLOGY, RESULTS_DIR, prepare_mnre, probe_stamp, write_result

SIGNALS = ("raw", "argument prior", "description prior", "learned term", "post over names alone",
           "description filled in", "typing confidence", "nearness", "dependency path", "same sentence", "names unlike")


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """P(a positive scores above a negative), ties counting half (scikit-learn's ``roc_auc_score``); None without
    both classes."""
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def filled_description(description: str, head: str, tail: str) -> str:
    """``description`` with its first "the head <word>" and "the tail <word>" replaced by the two names."""
    text = re.sub(r"\bthe head \w+", lambda _: head, description, count=1)
    return re.sub(r"\bthe tail \w+", lambda _: tail, text, count=1)


def pair_label(post_id: str, head: str, tail: str, relation: str, gold: dict) -> bool | None:
    """True when an annotation of the pair in that post is ``relation`` (MNRE name) from ``head`` to ``tail`` (either
    order for symmetric ones); False when the pair is annotated with something else among the scored relations or
    ``None``; None when MNRE did not annotate it within scope."""
    from bench.graph_quality.scoring import SYMMETRIC_RELATIONS

    pairs = [g for g in gold.get((post_id, frozenset((head, tail))), ()) if g.scope != "other"]
    if not pairs:
        return None
    return any(a.relation == relation and ((a.head_name, a.tail_name) == (head, tail) or relation in SYMMETRIC_RELATIONS)
               for g in pairs for a in g.annotations)


def dependency_distance(doc, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, bool]:
    """(edges on the shortest path between a token of character span ``a`` and one of ``b`` in the parse ``doc``,
    whether both spans start in one sentence). Dependency arcs are undirected edges; consecutive sentences' roots
    are joined, so a path across sentences runs through them."""
    from collections import deque

    def tokens(span):
        return [t.i for t in doc if t.idx < span[1] and t.idx + len(t) > span[0]]

    starts, ends = set(tokens(a)), set(tokens(b))
    if not starts or not ends:
        return len(doc), False
    neighbours: dict[int, set[int]] = {t.i: set() for t in doc}
    for t in doc:
        if t.head.i != t.i:
            neighbours[t.i].add(t.head.i)
            neighbours[t.head.i].add(t.i)
    roots = [sent.root.i for sent in doc.sents]
    for x, y in zip(roots, roots[1:]):
        neighbours[x].add(y)
        neighbours[y].add(x)
    same = doc[min(starts)].sent.start == doc[min(ends)].sent.start
    seen, queue = {i: 0 for i in starts}, deque(starts)
    while queue:
        i = queue.popleft()
        if i in ends:
            return seen[i], same
        for j in neighbours[i]:
            if j not in seen:
                seen[j] = seen[i] + 1
                queue.append(j)
    return len(doc), same


@contextlib.contextmanager
def config_changed(checkpoint, **changes):
    """The checkpoint's model scoring under ``changes`` to its config (e.g. a prior switched off), then as it was."""
    before = checkpoint.model.config
    checkpoint.model.config = dataclasses.replace(before, **changes)
    try:
        yield
    finally:
        checkpoint.model.config = before


def measure(part: str) -> dict:
    import torch
    import torch.nn.functional as F

    from bench.graph_quality.checkpoints import relation_checkpoint_for
    from bench.graph_quality.scoring import relation_name
    from extraction.detection import EntityDetector
    from extraction.mg_vmoe import relation_rule
    from extraction.pipeline import extractor_for
    from kg_loader.resolution import EntityInfo, name_evidence
    from mmkg.identity import entity_name
    from mmkg.records import Post
    from mmkg.settings import research_data_dir
    from models.modeling import score_gap

    mnre = prepare_mnre(research_data_dir(), None, part)
    checkpoint = relation_checkpoint_for(mnre["test_relations"], "")
    onto = mnre["ontologies"][HEADLINE_ONTOLOGY]
    posts = {p.id: p for p in mnre["posts"]}
    texts = {p.id: p.text for p in mnre["posts"]}
    extractor = extractor_for("mg-vmoe", "", checkpoint)
    typed = extractor.type_mentions(posts, EntityDetector().detect(mnre["posts"]), onto)
    candidates, raw = extractor.relation_scores(posts, typed, onto)
    names = [r.name for r in onto.relation_types]
    with config_changed(extractor.mre, argument_prior=0.0):
        no_argument = extractor.relation_scores(posts, typed, onto)[1]
    with config_changed(extractor.mre, similarity_prior=0.0):
        no_description = extractor.relation_scores(posts, typed, onto)[1]
    with config_changed(extractor.mre, argument_prior=0.0, similarity_prior=0.0):
        learned = extractor.relation_scores(posts, typed, onto)[1]

    # The same pairs with each post reduced to "head tail" (the ends keep their types).
    alone_posts, alone_typed = {}, []
    for k, (h, t, _) in enumerate(candidates):
        hs, ts = (" ".join(texts[h.mention.post_id][m.start:m.end].split()) for m in (h.mention, t.mention))
        pid = f"alone-{k}"
        alone_posts[pid] = Post(id=pid, text=f"{hs} {ts}", created_at=CREATED_AT)
        alone_typed += [dataclasses.replace(h, mention=dataclasses.replace(h.mention, post_id=pid, start=0, end=len(hs),
                                                                           text=hs)),
                        dataclasses.replace(t, mention=dataclasses.replace(t.mention, post_id=pid, start=len(hs) + 1,
                                                                           end=len(hs) + 1 + len(ts), text=ts))]
    extractor.forget_posts()
    alone_candidates, alone_raw = extractor.relation_scores(alone_posts, alone_typed, onto)
    alone = {h.mention.post_id: row for (h, _, _), row in zip(alone_candidates, alone_raw) if h.mention.start == 0}

    best = torch.tensor([max((names.index(r.name) for r in allowed), key=lambda i: float(row[i]))
                         for (_, _, allowed), row in zip(candidates, raw)], dtype=torch.long)
    gaps = score_gap(raw, best)
    rule = relation_rule(extractor.mre)
    descriptions = {r.name: r.description for r in onto.relation_types}
    with torch.inference_mode():
        def embed(xs: list[str]) -> torch.Tensor:
            return torch.cat([F.normalize(extractor.text_encoder.embed_labels(xs[i:i + 256]).float(), dim=-1)
                              for i in range(0, len(xs), 256)])

        spans = [(texts[h.mention.post_id][h.mention.start:h.mention.end],
                  texts[t.mention.post_id][t.mention.start:t.mention.end]) for h, t, _ in candidates]
        filled = (embed([texts[h.mention.post_id] for h, _, _ in candidates])
                  * embed([filled_description(descriptions[names[b]], *s) for b, s in zip(best.tolist(), spans)])).sum(-1)
    import spacy

    from extraction.detection import DEFAULT_SPACY_MODEL, spacy_view

    nlp = spacy.load(DEFAULT_SPACY_MODEL, exclude=["lemmatizer", "ner"])
    docs = dict(zip(texts, nlp.pipe([spacy_view(t) for t in texts.values()], batch_size=64)))
    to_mnre = {relation_name(r): r for r in mnre["test_relations"]}
    gold: dict = {}
    for g in mnre["gold_pairs"]:
        gold.setdefault((g.post_id, frozenset(g.names)), []).append(g)

    rows = []
    for k, ((h, t, _), b) in enumerate(zip(candidates, best.tolist())):
        pid = h.mention.post_id
        head, tail = entity_name(h.mention, texts), entity_name(t.mention, texts)
        label = pair_label(pid, head, tail, to_mnre[names[b]], gold)
        if label is None:
            continue
        first, second = sorted([(h.mention.start, h.mention.end), (t.mention.start, t.mention.end)])
        path, same_sentence = dependency_distance(docs[pid], first, second)
        value = float(raw[k, b])
        rows.append({
            "label": label, "relation": names[b],
            "kept": value >= rule.min_score and float(gaps[k]) >= rule.min_gap and head != tail,
            "raw": value, "argument prior": value - float(no_argument[k, b]),
            "description prior": value - float(no_description[k, b]), "learned term": float(learned[k, b]),
            "post over names alone": value - float(alone[f"alone-{k}"][b]) if f"alone-{k}" in alone else None,
            "description filled in": float(filled[k]), "typing confidence": min(h.score, t.score),
            "nearness": -(second[0] - first[1]), "dependency path": -path, "same sentence": float(same_sentence),
            "names unlike": 1.0 - name_evidence(EntityInfo("h", head, h.entity_type), EntityInfo("t", tail, t.entity_type))[0],
        })
    out = {"part": part, "candidate_pairs": len(candidates), "annotated_pairs": len(rows),
           "positives": sum(r["label"] for r in rows), "kept": sum(r["kept"] for r in rows),
           "kept_positives": sum(r["label"] for r in rows if r["kept"]),
           "rule": {"min_score": rule.min_score, "min_gap": rule.min_gap}, "auc": {}, "auc_kept": {},
           "by_relation": {rel: {"annotated": n, "positives": sum(r["label"] for r in rows if r["relation"] == rel)}
                           for rel, n in sorted(Counter(r["relation"] for r in rows).items())}}
    for name in SIGNALS:
        for key, subset in (("auc", rows), ("auc_kept", [r for r in rows if r["kept"]])):
            have = [r for r in subset if r[name] is not None]
            constant = len({round(r[name], 6) for r in have}) <= 1
            auc = None if constant else roc_auc([r[name] for r in have], [r["label"] for r in have])
            out[key][name] = {"auc": None if auc is None else round(auc, 3), "pairs": len(have),
                              "constant": constant}
    return out


def render(result: dict) -> str:
    lines = ["# Which signal tells a related pair from a co-mentioned one", "",
             f"`python -m bench.graph_quality.relation_signals --mnre-part {result['part']}` — {result['when']}, commit "
             f"`{result['commit']}`, wall {result['wall_s']} s. Definitions: `bench/graph_quality/relation_signals.py`.", "",
             f"{result['candidate_pairs']} candidate pairs; {result['annotated_pairs']} annotated within scope, of which "
             f"{result['positives']} positive (best allowed relation = MNRE's, in its direction); the shipped rule "
             f"(raw >= {result['rule']['min_score']:.2f}, gap >= {result['rule']['min_gap']}) keeps {result['kept']} of "
             f"them, {result['kept_positives']} positive.", "",
             "| signal | ROC AUC, all annotated pairs | ROC AUC, pairs the rule keeps |", "|---|---|---|"]

    def cell(v: dict) -> str:
        return "constant" if v["constant"] else f"{v['auc']} ({v['pairs']})"

    for name in SIGNALS:
        lines.append(f"| {name} | {cell(result['auc'][name])} | {cell(result['auc_kept'][name])} |")
    lines += ["", "Best allowed relation of the annotated pairs (positives / annotated):", ""]
    lines += [f"- `{rel}`: {v['positives']} / {v['annotated']}" for rel, v in result["by_relation"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from bench.graph_quality.run import MNRE_PARTS, research_data

    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.relation_signals",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--mnre-part", choices=[p for p in MNRE_PARTS if p != "product"], default="dev")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if research_data() is None:
        return 0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = measure(args.mnre_part)
    result |= probe_stamp(t0)
    stem = "relation_signals" if args.mnre_part == "dev" else f"relation_signals_{args.mnre_part}"
    write_result(args.out, stem, result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
