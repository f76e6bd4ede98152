"""The interface every zero-shot typer / relation extractor implements, and what they share.

Implementations: ``extraction.label_similarity.LabelSimilarityExtractor`` (no training, the
baseline) and ``extraction.mg_vmoe.MGVMoEExtractor`` (MG-VMoE). The pipeline only talks to this
interface, so the model is a configuration choice. Label sets are passed at call time: a type added to the ontology is scored
on the next call, with no retraining.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import permutations
from typing import Protocol, runtime_checkable

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
    typed: Sequence[TypedMention], ontology: Ontology
) -> list[tuple[TypedMention, TypedMention, tuple[RelationType, ...]]]:
    """Ordered mention pairs of one post whose (head type, tail type) some relation allows.

    Mentions typed OTHER_TYPE and pairs over the same span are never candidates. Order is
    deterministic (input order), so re-runs produce the same candidates.
    """
    by_post: dict[str, list[TypedMention]] = {}
    for tm in typed:
        if tm.entity_type != OTHER_TYPE:
            by_post.setdefault(tm.mention.post_id, []).append(tm)
    out = []
    for mentions in by_post.values():
        for head, tail in permutations(mentions, 2):
            if (head.mention.start, head.mention.end) == (tail.mention.start, tail.mention.end):
                continue
            if head.mention.text.casefold() == tail.mention.text.casefold():
                continue
            allowed = ontology.relations_for(head.entity_type, tail.entity_type)
            if allowed:
                out.append((head, tail, allowed))
    return out
