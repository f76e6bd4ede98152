"""The interface every zero-shot typer / relation extractor implements, and what they share.

Implementations: ``extraction.label_similarity.LabelSimilarityExtractor`` (no training, the
baseline) and ``extraction.mg_vmoe.MGVMoEExtractor`` (MG-VMoE). The pipeline only talks to this
interface, so the model is a configuration choice. Label sets are passed at call time: a type added to the ontology is scored
on the next call, with no retraining.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import permutations
from typing import Protocol, runtime_checkable

from mmkg.identity import entity_name, spells
from mmkg.ontology import Ontology, RelationType
from mmkg.records import OTHER_TYPE, Mention, Post, RelationMention, TypedMention


@runtime_checkable
class ZeroShotExtractor(Protocol):
    #: Written on every typed mention and relation, e.g. "label-sim/all-MiniLM-L6-v2@1".
    model_version: str

    def type_mentions(
        self, posts: Mapping[str, Post], mentions: Sequence[Mention], ontology: Ontology
    ) -> list[TypedMention]:
        """One TypedMention per input mention (entity_type OTHER_TYPE when abstaining)."""
        ...

    def extract_relations(
        self, posts: Mapping[str, Post], typed: Sequence[TypedMention], ontology: Ontology
    ) -> list[RelationMention]:
        """Relations between typed mentions of the same post; abstentions are not returned."""
        ...


def relation_candidates(
    posts: Mapping[str, Post], typed: Sequence[TypedMention], ontology: Ontology
) -> list[tuple[TypedMention, TypedMention, tuple[RelationType, ...]]]:
    """Ordered mention pairs of one post whose (head type, tail type) some relation allows.

    Mentions typed OTHER_TYPE and pairs over the same span are never candidates, nor two mentions of one name:
    equal once normalised (``#LisbonFalcons`` and "Lisbon Falcons"), or a handle that spells the other
    (``@martasilva9`` and "Marta Silva", ``mmkg.identity.spells``: typing reads it as her name, so a relation
    between the two would be one from her to herself). Nor is the account a retweet
    quotes (``RT @CNN: ...``, ``Post.retweet_source``): it says who posted the words, not what they are about.
    Chosen on the development protocol (``bench.graph_quality.audit --mnre-part dev``: 51 of the 138 triples the
    graph wrote there had the retweeted account as an end, and their post stated 6 of them, against 36 of the
    other 87; README, *Relations the post states*). The mention stays an entity of the post. Order is
    deterministic (input order), so re-runs produce the same candidates.
    """
    by_post: dict[str, list[TypedMention]] = {}
    for tm in typed:
        m = tm.mention
        if tm.entity_type != OTHER_TYPE and not posts[m.post_id].is_retweet_source(m.start, m.end):
            by_post.setdefault(m.post_id, []).append(tm)
    out = []
    for post_id, mentions in by_post.items():
        names = [entity_name(tm.mention, {post_id: posts[post_id].text}) for tm in mentions]
        for (i, head), (j, tail) in permutations(enumerate(mentions), 2):
            if (head.mention.start, head.mention.end) == (tail.mention.start, tail.mention.end):
                continue
            h, t = names[i], names[j]
            if head.mention.text.casefold() == tail.mention.text.casefold() or h == t or spells(h, t) or spells(t, h):
                continue
            allowed = ontology.relations_for(head.entity_type, tail.entity_type)
            if allowed:
                out.append((head, tail, allowed))
    return out


def best_reading_per_pair(scored: Iterable[tuple[RelationMention, float]]) -> list[RelationMention]:
    """At most one relation per unordered mention pair of a post: of the readings kept for a pair (head-first
    and tail-first, each with its best allowed relation), the one with the higher raw score (``scored`` pairs
    each relation with that score). So a pair is never written both ways, and never with two relations.
    Output keeps the input order of the pairs (deterministic re-runs)."""
    best: dict[tuple, tuple[RelationMention, float]] = {}
    for rel, raw in scored:
        spans = sorted(((rel.head.mention.start, rel.head.mention.end), (rel.tail.mention.start, rel.tail.mention.end)))
        key = (rel.post_id, *spans)
        if key not in best or raw > best[key][1]:
            best[key] = (rel, raw)
    return [rel for rel, _ in best.values()]


#: Raw-score margin by which a second type must beat a surface form's consensus type, on average over at
#: least two of its own mentions, to stand as a homonym ("Porto" the city and "Porto" the club). About 0.1 of
#: cosine at the shipped similarity prior's weight of 10; set by judgement, not tuned on any test set.
HOMONYM_MARGIN = 1.0


def narrowest(means, kind: int, parents: Sequence[int | None] | None, min_score: float) -> int:
    """From type ``kind``, the narrowest kind of it whose score in ``means`` clears ``min_score``: a child
    type (``parents[c] == kind``) that fits replaces its parent, the best-scoring child first, and so on
    down (``Organization`` -> ``SportsTeam``)."""
    if not parents:
        return kind
    while True:
        fits = [c for c, p in enumerate(parents) if p == kind and float(means[c]) >= min_score]
        if not fits:
            return kind
        kind = max(fits, key=lambda c: float(means[c]))


def decided_type(raw, kind: int | None, names: Sequence[str]) -> tuple[str, float]:
    """A mention's written type and score for a typing decision ``kind`` (a type index, None to abstain) over its
    raw scores ``raw`` (one row, the label set's type order): the type's name (``OTHER_TYPE`` when it abstains)
    and that type's softmax probability over the label set (an abstaining mention: its best type's)."""
    p = raw.softmax(-1)
    return (OTHER_TYPE if kind is None else names[kind]), float(p[int(raw.argmax()) if kind is None else kind])


def lineage(kind: int, parents: Sequence[int | None] | None) -> set[int]:
    """``kind`` with its ancestors and descendants in the ontology's type tree (``Ontology.parent_indices``)."""
    if not parents:
        return {kind}

    def ancestors(k: int) -> list[int]:
        out = []
        while parents[k] is not None:
            k = parents[k]
            out.append(k)
        return out

    return {kind, *ancestors(kind)} | {c for c in range(len(parents)) if kind in ancestors(c)}


def type_gap(means, kind: int, parents: Sequence[int | None] | None = None) -> float:
    """Raw points by which type ``kind`` beats the best type outside its own lineage in ``means`` (a parent and its
    subtype both fit one entity by design, so they do not count against each other); +inf with no other type."""
    import torch

    from models.modeling import score_gap

    others = means.clone()
    others[[c for c in lineage(kind, parents) if c != kind]] = float("-inf")
    return float(score_gap(others[None], torch.tensor([kind]))[0])


def agree_on_types(keys: Sequence[str], raw, min_score: float, margin: float = HOMONYM_MARGIN,
                   parents: Sequence[int | None] | None = None, min_gap: float | None = None) -> list[int | None]:
    """One type per surface form, decided from all its mentions' scores.

    ``keys`` names each mention's surface form (its normalised entity name); ``raw`` is the (mentions,
    types) tensor of raw scores. Mentions sharing a key get the type with the best *mean* raw score over
    them, kept when that mean clears ``min_score`` and, with ``min_gap``, beats every type outside its lineage
    by that many raw points on the same means (``type_gap``: a name that reads as two types at once abstains
    rather than be written as either; else all abstain: ``None``); a second type stands only
    for the mentions that prefer it, when at least two of them do and by ``margin`` on average. So one
    mistyped mention no longer makes a second entity (the entity id hashes the type). With ``parents``
    (``Ontology.parent_indices``), a decided type then narrows to a child type that fits too (``narrowest``,
    on the same mean scores).

    The typer applies it to a shard's mentions; ``extraction.pipeline.agree_run_types`` applies it again to
    all of a run's mentions (every shard's staged raw scores, in shard order), so the decision is the
    run's, not the shard's. Deterministic: equal inputs in equal order give equal outputs."""
    out: list[int | None] = [None] * len(keys)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for idx in groups.values():
        sub = raw[idx]
        consensus = int(sub.mean(0).argmax())
        own = sub.argmax(1).tolist()
        clusters = {consensus: list(range(len(idx)))}
        for other in set(own) - {consensus}:
            members = [j for j, o in enumerate(own) if o == other]
            if len(members) >= 2 and float((sub[members, other] - sub[members, consensus]).mean()) >= margin:
                clusters[other] = members
                clusters[consensus] = [j for j in clusters[consensus] if j not in members]
        for kind, members in clusters.items():
            if members and float(sub[members, kind].mean()) >= min_score and (
                    min_gap is None or type_gap(sub[members].mean(0), kind, parents) >= min_gap):
                final = narrowest(sub[members].mean(0), kind, parents, min_score)
                for j in members:
                    out[idx[j]] = final
    return out


#: How many of a run's abstained names ``abstained_names`` lists (the most mentioned first); the count covers all.
ABSTAINED_LISTED = 50


def abstained_names(keys: Sequence[str], raw, decided: Sequence[int | None], names: Sequence[str], min_score: float,
                    min_gap: float | None = None, parents: Sequence[int | None] | None = None,
                    listed: int = ABSTAINED_LISTED) -> tuple[int, list[dict]]:
    """The names the typer left out of the graph: each key with a mention ``decided`` None (``keys`` and ``decided``
    as ``agree_on_types`` took and gave them: a handle spelling a name of its post is counted with that name), the
    most mentioned first (then by name), at most ``listed`` of them, with the count of all.

    Each entry says how many of its mentions abstained, its two best types by mean raw score over them (``types``:
    ``[name, score]`` pairs, the best first), and why:
    ``below_min_score`` (no type scores ``min_score``: the label set may lack its type) or ``ambiguous`` (the best
    type beats another by less than ``min_gap``). A person who knows the type says so (``mmkg entities set-type
    NAME TYPE``) and re-runs the interval: the run then types the name so (``IntervalPlan.type_decisions``)."""
    groups: dict[str, list[int]] = {}
    for i, (key, kind) in enumerate(zip(keys, decided)):
        if kind is None:
            groups.setdefault(key, []).append(i)
    out = []
    for key, idx in groups.items():
        means = raw[idx].mean(0)
        order = means.argsort(descending=True).tolist()
        best = order[0]
        reason = "below_min_score" if float(means[best]) < min_score else "ambiguous"
        entry = {"name": key, "mentions": len(idx), "reason": reason,
                 "types": [[names[k], round(float(means[k]), 2)] for k in order[:2]]}
        if reason == "ambiguous" and min_gap is not None:
            entry["gap"] = round(type_gap(means, best, parents), 2)
        out.append(entry)
    out.sort(key=lambda e: (-e["mentions"], e["name"]))
    return len(out), out[:listed]


#: A typed name whose type beats the best type outside its lineage by less than this many raw points (``type_gap`` of
#: its mentions' mean scores) is listed for a person to review (``least_sure_names``). Read off the development sets
#: (``python -m bench.graph_quality.type_margin``, ``bench/results/type_margin.md``): of the shipped typer's names typed
#: by less than 1.0, 27 % / 30 % were mistyped (Twitter-2017 valid / WNUT-16 dev, names with a gold span), of those
#: above it 4 % / 12 %; the names under 1.0 are 35 % / 46 % of the written ones and hold 77 % / 61 % of the mistyped.
REVIEW_GAP = 1.0

#: How many of a run's least sure names ``least_sure_names`` lists; the count covers all under ``REVIEW_GAP``.
LEAST_SURE_LISTED = 50


def written_names(keys: Sequence[str], decided: Sequence[int | None]) -> dict[tuple[str, int], list[int]]:
    """Each name a typing decision writes, ``(key, type index)``, with the positions of its mentions in ``keys`` /
    ``decided`` (in order); abstentions (``None``) are left out. A homonym is two names."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (key, kind) in enumerate(zip(keys, decided)):
        if kind is not None:
            groups.setdefault((key, kind), []).append(i)
    return groups


def least_sure_names(keys: Sequence[str], raw, decided: Sequence[int | None], names: Sequence[str],
                     parents: Sequence[int | None] | None = None, below: float = REVIEW_GAP,
                     listed: int = LEAST_SURE_LISTED) -> tuple[int, list[dict]]:
    """The names the typer wrote by the narrowest margin, for a person to check: each name (``keys`` and ``decided`` as
    ``agree_on_types`` took and gave them; ``None`` entries, abstained or typed by a person, are skipped) and its
    type, where that type beats the best type outside its lineage by less than ``below`` raw points on the mean of
    its mentions' scores. The narrowest first (then the most mentioned, then by name), at most ``listed``, with the
    count of all. Each entry, shaped like ``abstained_names``' ones: ``name``, ``mentions``, ``types`` (the written
    type and the runner-up outside its lineage, each ``[name, mean raw score]``) and ``gap``. A wrong one is fixed
    with ``mmkg entities set-type NAME TYPE``."""
    out = []
    for (key, kind), idx in written_names(keys, decided).items():
        means = raw[idx].mean(0)
        gap = type_gap(means, kind, parents)
        if gap >= below:
            continue
        kin = lineage(kind, parents)
        runner = next(k for k in means.argsort(descending=True).tolist() if k not in kin)
        out.append({"name": key, "mentions": len(idx), "gap": round(gap, 2),
                    "types": [[names[kind], round(float(means[kind]), 2)], [names[runner], round(float(means[runner]), 2)]]})
    out.sort(key=lambda e: (e["gap"], -e["mentions"], e["name"]))
    return len(out), out[:listed]
