"""A person's word on relation triples (``mmkg relations ...``): a triple a person rejects stays out of the graph.

The relation stage is zero-shot, and on real tweets many triples it writes are not stated by their post (README,
*Benchmarks*: *Relations the post states*). So a data team reviews the triples it relies on: ``review`` lists
the weakest ones (fewest posts, lowest score) with a post that states them; ``reject_triple`` stores
``(:RelationDecision {id, head, relation, tail, decision: 'rejected', decided_by, decided_at, note})`` apart from the
entities (a load may delete and recreate them; the decision stays) and deletes the relationship with all its
evidence. Every later load removes it again in its own transaction, after the accepted merges and the type
agreement (``remove_rejected_tx``, counted as ``triples_rejected`` in the load report), so a re-run or a backfill of
the posts that gave it does not bring it back. ``allow_triple`` drops the decision; the next load of a post that
gives the triple writes it again.

A decision names the two entities by their (normalised) names, not their ids: it holds whatever type a later
run or ``mmkg entities set-type`` gives them (an entity's id hashes its type). An accepted merge
(``kg_loader.resolution``) moves a merged-away entity's triples to the entity that stays, and a rejection naming
the merged-away entity follows them: it also removes the triple under the name that stays (the merge says the two
names are one entity, so it is the same fact). A merged-away name can still be named in a new rejection. A symmetric
relation's decision covers both directions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from kg_loader import cypher, resolution

SCHEMA_STATEMENTS = tuple(s for s in cypher.SCHEMA_STATEMENTS if "(d:RelationDecision)" in s)

WRITE_DECISION = "MERGE (d:RelationDecision {id: $props.id}) SET d = $props"
DELETE_DECISION = "MATCH (d:RelationDecision {id: $id}) DELETE d RETURN count(d) AS deleted"
READ_DECISIONS = "MATCH (d:RelationDecision) RETURN properties(d) AS d ORDER BY d.decided_at, d.id"
#: The weakest relation triples first: fewest posts, then lowest best score; one post that gives each.
REVIEW = """
MATCH (h:Entity)-[r]->(t:Entity)
WHERE r.relation IS NOT NULL AND ($relation IS NULL OR r.relation = $relation) AND r.evidence_count <= $max_posts
WITH h, r, t ORDER BY r.evidence_count, r.max_score, h.name, t.name LIMIT $limit
OPTIONAL MATCH (p:Post {id: r.post_ids[0]})
RETURN h.name AS head, h.type AS head_type, r.relation AS relation, t.name AS tail, t.type AS tail_type,
       r.evidence_count AS posts, r.max_score AS max_score, r.post_ids[0] AS post_id, p.text AS post_text
"""


class RelationReviewError(ValueError):
    """A decision that cannot be taken (unknown relation, no such entity); the message says why."""


@dataclass(frozen=True)
class RelationDecision:
    """A person's rejection of a relation triple, as stored in ``(:RelationDecision)``."""

    head: str  # normalised entity name
    relation: str  # label-set relation name (snake_case)
    tail: str
    symmetric: bool
    decided_by: str
    decided_at: str
    note: str | None = None
    decision: str = "rejected"

    @property
    def id(self) -> str:
        return decision_id(self.head, self.relation, self.tail, self.symmetric)


def decision_id(head: str, relation: str, tail: str, symmetric: bool) -> str:
    """``head|relation|tail``; a symmetric relation's names in sorted order (one decision for both directions)."""
    if symmetric and tail < head:
        head, tail = tail, head
    return f"{head}|{relation}|{tail}"


def ensure_schema(driver, database: str | None = None) -> None:
    for statement in SCHEMA_STATEMENTS:
        driver.execute_query(statement, database_=database)


def relation_of(name: str, relations: Iterable[str]) -> str:
    """The label set's relation ``name`` stands for (``MEMBER_OF`` or ``member_of``); refused when unknown."""
    known = sorted(relations)
    wanted = name.strip().lower()
    if wanted not in known:
        raise RelationReviewError(f"no relation {name!r} in the label set (known: {', '.join(known)})")
    return wanted


def _entity_name(driver, name: str, database: str | None) -> str:
    """``name`` normalised, refused unless an entity has it or an accepted merge folded an entity of that name."""
    from mmkg.identity import normalize_name

    normalised = normalize_name(name)
    records, _, _ = driver.execute_query("MATCH (e:Entity {name: $name}) RETURN count(e) AS n", name=normalised,
                                         database_=database, routing_="r")  # fmt: skip
    if not records[0]["n"]:
        merged = resolution.names_after_merges(resolution.read_decisions(driver, database))
        if normalised not in merged:
            raise RelationReviewError(f"no entity named {normalised!r} in the graph")
    return normalised


def reject_triple(driver, head: str, relation: str, tail: str, *, relations: Iterable[str],
                  symmetric: Iterable[str] = (), database: str | None = None, note: str | None = None,
                  decided_by: str = "user") -> tuple[RelationDecision, int]:  # fmt: skip
    """Reject ``head -relation-> tail`` (entity names as written or normalised, a relation of ``relations``): store
    the decision and delete the triple now; returns the decision and how many relationships went (0 when the graph
    holds none now: the decision still keeps it out of later loads)."""
    relation = relation_of(relation, relations)
    head, tail = _entity_name(driver, head, database), _entity_name(driver, tail, database)
    if head == tail:
        raise RelationReviewError(f"{head!r} to itself is no triple (the loader never writes a self-loop)")
    decision = RelationDecision(head, relation, tail, relation in set(symmetric), decided_by,
                                datetime.now(timezone.utc).isoformat(timespec="seconds"), note)
    ensure_schema(driver, database)
    with driver.session(database=database) as session:
        removed = session.execute_write(_write_and_remove, decision)
    return decision, removed


def _write_and_remove(tx, decision: RelationDecision) -> int:
    props = {k: v for k, v in asdict(decision).items() if v is not None} | {"id": decision.id}
    tx.run(WRITE_DECISION, props=props).consume()
    return _remove(tx, [decision])


def allow_triple(driver, head: str, relation: str, tail: str, *, relations: Iterable[str],
                 symmetric: Iterable[str] = (), database: str | None = None) -> bool:  # fmt: skip
    """Drop the rejection of the triple (the next load of a post that gives it writes it again); False when
    there was none."""
    from mmkg.identity import normalize_name

    relation = relation_of(relation, relations)
    key = decision_id(normalize_name(head), relation, normalize_name(tail), relation in set(symmetric))
    records, _, _ = driver.execute_query(DELETE_DECISION, id=key, database_=database)
    return bool(records[0]["deleted"])


def read_decisions(driver, database: str | None = None) -> list[RelationDecision]:
    records, _, _ = driver.execute_query(READ_DECISIONS, database_=database, routing_="r")
    return [_decision(r["d"]) for r in records]


def _decision(props: dict) -> RelationDecision:
    return RelationDecision(props["head"], props["relation"], props["tail"], bool(props.get("symmetric")),
                            props.get("decided_by", "user"), props.get("decided_at", ""), props.get("note"),
                            props.get("decision", "rejected"))  # fmt: skip


def remove_rejected_tx(tx) -> int:
    """Delete, in the caller's transaction (a shard's load), every triple a person rejected; returns how many went.
    With no decision it is one read."""
    return _remove(tx, [_decision(r["d"]) for r in tx.run(READ_DECISIONS)])


def _remove(tx, decisions: list[RelationDecision]) -> int:
    """Delete the rejected triples, under their names and, for an entity an accepted merge folded into another,
    under the name of the entity that stays."""
    rejected = [d for d in decisions if d.decision == "rejected"]
    renamed = resolution.names_after_merges_tx(tx) if rejected else {}
    by_relation: dict[tuple[str, bool], list[dict]] = defaultdict(list)
    for d in rejected:
        pairs = {(h, t) for h in {d.head, renamed.get(d.head, d.head)} for t in {d.tail, renamed.get(d.tail, d.tail)}
                 if h != t}  # two names the merges made one entity: the loader wrote no such self-loop
        by_relation[(d.relation, d.symmetric)].extend({"head": h, "tail": t} for h, t in sorted(pairs))
    removed = 0
    for (relation, symmetric), rows in sorted(by_relation.items()):
        arrow = "-" if symmetric else "->"  # a symmetric triple is stored once, in either order
        removed += tx.run(
            f"UNWIND $rows AS row MATCH (:Entity {{name: row.head}})-[r:{cypher.relationship_type(relation)}]{arrow}"
            "(:Entity {name: row.tail}) WITH DISTINCT r DELETE r RETURN count(r) AS removed", rows=rows,
        ).single()["removed"]
    return removed


def review(driver, database: str | None = None, relation: str | None = None, max_posts: int = 1,
           limit: int = 20) -> list[dict]:  # fmt: skip
    """The weakest triples (at most ``max_posts`` posts of evidence; lowest best score first), each with a post."""
    records, _, _ = driver.execute_query(REVIEW, relation=relation, max_posts=max_posts, limit=limit,
                                         database_=database, routing_="r")  # fmt: skip
    return [r.data() for r in records]
