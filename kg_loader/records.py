"""Rows the graph writer accepts: one dataclass per kind of thing written to Neo4j.

``from_extraction`` turns the pipeline's typed records into these rows, computing the
deterministic entity ids; nothing else in the project decides an entity's identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mmkg.identity import entity_id, identity_surface, normalize_name
from mmkg.ontology import Ontology
from mmkg.records import OTHER_TYPE, Post, RelationMention, TypedMention


@dataclass(frozen=True, slots=True)
class PostRow:
    """(:Post); ``(created_at, digest)`` is its version (``cypher.UPSERT_POSTS``), ``partition`` the
    landing day it was read from (a re-run of that day retracts the posts it no longer has)."""

    id: str
    text: str
    created_at: str
    author: str | None = None
    lang: str | None = None
    source: str | None = None
    run_id: str | None = None
    digest: str = ""
    partition: str | None = None


@dataclass(frozen=True, slots=True)
class ImageRow:
    sha256: str
    post_id: str
    uri: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class MentionRow:
    """(:Post)-[:MENTIONS {start, end, ...}]->(:Entity:<entity_type>)."""

    post_id: str
    entity_id: str
    entity_type: str  # becomes a label: validated before any Cypher is built
    name: str  # normalised name
    surface: str  # text as written in the post, kept as an alias
    start: int
    end: int
    score: float
    model_version: str
    label_set_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class RelationRow:
    """(:Entity)-[:<REL_TYPE>]->(:Entity), one relationship per triple, evidence per post."""

    head_id: str
    tail_id: str
    relation: str  # ontology name, e.g. member_of; the relationship type is its UPPER_CASE
    post_id: str
    score: float
    model_version: str
    label_set_id: str
    run_id: str


def post_digest(post: Post) -> str:
    """SHA-256 over what the post says (text, author, lang, source, image references as written):
    breaks a tie between two versions of one id with the same ``created_at``, deterministically."""
    content = [post.text, post.author, post.lang, post.source, [im.uri for im in post.images]]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()


def post_rows(posts: Iterable[Post], run_id: str, partition: str | None = None) -> list[PostRow]:
    return [PostRow(p.id, p.text, p.created_at, p.author, p.lang, p.source, run_id, post_digest(p), partition)
            for p in posts]


def image_rows(posts: Iterable[Post]) -> list[ImageRow]:
    """One row per (post, image bytes): a post naming one image twice links it once, with the
    smallest of its references (deterministic whatever the order of ``Post.images``)."""
    best: dict[tuple[str, str], ImageRow] = {}
    for p in posts:
        for im in p.images:
            if im.ok and im.sha256:
                row = ImageRow(im.sha256, p.id, im.uri, im.width, im.height)
                key = (p.id, im.sha256)
                if key not in best or row.uri < best[key].uri:
                    best[key] = row
    return list(best.values())


def mention_rows(
    typed: Iterable[TypedMention], run_id: str, texts: Mapping[str, str] | None = None
) -> list[MentionRow]:
    """Typed mentions to rows; abstentions (OTHER_TYPE) are not written to the graph.

    ``texts`` (post id -> text) lets a hashtag or handle mention share the identity of the plain name.
    """
    rows = []
    for tm in typed:
        if tm.entity_type == OTHER_TYPE:
            continue
        m = tm.mention
        key = identity_surface(m, texts)
        rows.append(
            MentionRow(
                post_id=m.post_id,
                entity_id=entity_id(key, tm.entity_type),
                entity_type=tm.entity_type,
                name=normalize_name(key),
                surface=m.text,
                start=m.start,
                end=m.end,
                score=float(tm.score),
                model_version=tm.model_version,
                label_set_id=tm.label_set_id,
                run_id=run_id,
            )
        )
    return rows


def relation_rows(
    relations: Iterable[RelationMention], run_id: str, texts: Mapping[str, str] | None = None,
    symmetric: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[RelationRow], dict[str, int]]:
    """Relation mentions to rows, and what was dropped on the way, by reason.

    - ``self_loop``: head and tail are one entity (``#MonsoonLetters`` and "Monsoon Letters"): never written.
    - ``reverse_in_post``: a post that relates two entities both ways by one asymmetric relation (through
      different mentions of them) keeps only the reading with the better score.
    A ``symmetric`` relation is written once, head and tail in canonical order (the smaller entity id
    first), so ``a PEER b`` and ``b PEER a`` are one relationship; query it undirected, ``-[:PEER]-``.
    """
    dropped = {"self_loop": 0, "reverse_in_post": 0}
    best: dict[tuple[str, str, str, str], RelationRow] = {}  # (post, relation, entity pair unordered)
    for r in relations:
        head = entity_id(identity_surface(r.head.mention, texts), r.head.entity_type)
        tail = entity_id(identity_surface(r.tail.mention, texts), r.tail.entity_type)
        if head == tail:
            dropped["self_loop"] += 1
            continue
        if r.relation in symmetric and tail < head:
            head, tail = tail, head
        row = RelationRow(head_id=head, tail_id=tail, relation=r.relation, post_id=r.post_id, score=float(r.score),
                          model_version=r.model_version, label_set_id=r.label_set_id, run_id=run_id)
        key = (r.post_id, r.relation, *sorted((head, tail)))
        other = best.get(key)
        if other is not None and (other.head_id, other.tail_id) != (head, tail):
            dropped["reverse_in_post"] += 1
        if other is None or row.score > other.score:
            best[key] = row
    return list(best.values()), dropped


def ontology_labels(ontology: Ontology) -> tuple[set[str], set[str]]:
    """Entity labels and relation names this label set allows the writer to create."""
    return {e.name for e in ontology.entity_types}, {r.name for r in ontology.relation_types}
