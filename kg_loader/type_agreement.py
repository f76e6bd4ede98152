"""One name, one entity type across runs: the graph-wide step of type agreement.

A run decides one type per surface form from all of its mentions (``extraction.zero_shot.agree_on_types``,
applied to the whole run by ``extraction.pipeline.agree_run_types``), and the entity id hashes that type
(``mmkg.identity``). Runs never read the graph (a backfill must give the same graph in any order), so two
days that typed "seoul tigers" differently left two entities, one per type. This step, run at the end of
every load in the load's own transaction, folds them together again from the graph's own evidence:

- Every ``MENTIONS`` carries the type its run gave it (``m.type``; a mention written before that property
  existed counts as its entity's type), and keeps it when it moves.
- For each name the load touched (its new mentions, the mentions its posts had before, and those of posts a
  re-run retracted) that more than one entity holds, or that one entity holds after taking in another (its
  mentions may carry other types, and a re-run may have removed some), the mentions of those entities are
  the evidence: the type with more mentions, then
  the higher mean typing score, then the smaller name (``resolution.preferred_type``, the rule a cross-type
  candidate's ``suggested_type`` uses) takes every other entity of the name (``resolution.fold_entity``:
  mentions, triples with evidence combined per post, aliases, the old id in ``merged_ids``). The entity of
  that type is created when none is left (its mentions had moved onto another type earlier).
- The decision is a function of the mentions in the graph, not of the order they arrived in: loading days
  in any order, or re-running one, gives the same entities (``tests/test_graph_type_agreement.py``). Two
  loads at once decide a shared name one after the other (``LOCK_NAMES``), the second seeing the first's
  entity; a deadlock between them re-runs one load's transaction (the driver's managed retry).
- A name stays split, on purpose, when a run itself gave it two types (its agreement found a homonym with a
  clear margin: "Porto" the city and the club), or when a decision of a person names one of its entities
  (``mmkg entities accept/reject``): the rule never overrides a person.
- A person may also set a name's type (``set_type``, ``mmkg entities set-type porto Location``): a
  ``(:TypeDecision {name, type})`` node, apart from the entities, that every later load follows whatever the
  evidence, until ``clear_type``; or declare it a homonym (``keep_apart``, ``mmkg entities keep-apart
  jordan``): a ``(:TypeDecision {name})`` with no type; what was folded is split again by the type each
  mention's run gave it, triple evidence following its post, and no load folds the name again.

Relation triples move with their entities; a triple whose argument types the agreed type no longer fits
(``located_in`` from an entity that is now a Person) is kept: its post said it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

from kg_loader import cypher
from kg_loader.resolution import (CANDIDATE_TYPE, ResolutionError, combine_evidence, create_canonical, fold_entity,
                                  preferred_type, read_triples, write_triples)
from mmkg.identity import entity_id

#: Each name of ``$names`` (sorted) locked until the transaction ends: a MERGE on the constrained key waits
#: while another transaction holds it, and the node is deleted at once (it never commits). Two loads of one
#: name at the same time (intervals of a backfill) so decide one after the other, the second seeing the
#: first's entities; without it each reads before the other commits and both leave their own entity.
LOCK_NAMES = """
UNWIND $names AS name
MERGE (lock:EntityNameLock {name: name})
DELETE lock
"""

#: The entities of each name in ``$names`` that needs a decision: held by more than one entity, or by one that
#: took in another before (``merged_ids``: its mentions may carry other types, and the evidence may have moved
#: since), with the evidence of their mentions (type given by the run, typing score, run id).
READ_NAME_GROUPS = """
UNWIND $names AS name
MATCH (e:Entity {name: name})
WITH name, e ORDER BY name, e.id
WITH name, collect(e) AS entities
OPTIONAL MATCH (d:TypeDecision {name: name})
WITH name, entities, properties(d).type AS set_type, d IS NOT NULL AS person_decided
WHERE size(entities) > 1 OR person_decided OR any(e IN entities WHERE properties(e).merged_ids IS NOT NULL)
UNWIND entities AS e
RETURN name, set_type, person_decided, e.id AS id, e.type AS type,
       [(:Post)-[m:MENTIONS]->(e) | [coalesce(m.type, e.type), m.score, m.run_id]] AS mentions
ORDER BY name, id
"""

WRITE_TYPE_DECISION = "MERGE (d:TypeDecision {name: $props.name}) SET d = $props"
DELETE_TYPE_DECISION = "MATCH (d:TypeDecision {name: $name}) DELETE d RETURN count(d) AS deleted"
READ_TYPE_DECISIONS = "MATCH (d:TypeDecision) RETURN properties(d) AS d ORDER BY d.decided_at, d.name"

#: Which of ``$ids`` (entity ids) a person's decision names (accepted or rejected, as either side or as
#: what stayed or went): the rule leaves such a name to the person. (``properties(d)``: no notification of
#: unknown property keys on a graph with no decision yet, as in ``resolution.READ_PAIR``.)
READ_DECIDED_ENTITIES = """
MATCH (d:MergeDecision)
WITH properties(d) AS d
UNWIND [d.a_id, d.b_id, d.canonical_id, d.merged_id] AS id
WITH DISTINCT id WHERE id IN $ids
RETURN collect(id) AS decided
"""

#: Names the entities these posts mention now (before a re-run replaces their mentions). Every relationship
#: from a post to an entity is a MENTIONS; not naming the type keeps a first load (no MENTIONS in the graph yet)
#: free of the server's "relationship type does not exist" notification.
READ_POST_ENTITY_NAMES = """
UNWIND $ids AS id
MATCH (:Post {id: id})-->(e:Entity)
RETURN collect(DISTINCT e.name) AS names
"""

ALL_SPLIT_NAMES = """
MATCH (e:Entity)
WITH e.name AS name, count(*) AS n WHERE n > 1
RETURN collect(name) AS names
"""


@dataclass
class TypeAgreement:
    """What ``agree_types`` did: entities folded into their name's agreed type, and names left split."""

    entities_folded: int = 0
    mentions_moved: int = 0
    relations_moved: int = 0
    entities_created: int = 0
    #: Names with entities of two types that stay split, by reason (``homonym_in_run``, ``decided_by_person``).
    left_split: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def merge(self, other: "TypeAgreement") -> "TypeAgreement":
        """Add ``other``'s counts to this report (``agree_all_types`` sums its batches)."""
        for f in fields(self):
            if f.name != "left_split":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for reason, n in other.left_split.items():
            self.left_split[reason] += n
        return self

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"left_split": dict(self.left_split)}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One entity of a split name and the mentions it holds: (type the run gave, score, run id) each."""

    id: str
    type: str
    mentions: tuple[tuple[str, float, str | None], ...]


def agreed_type(entities: Sequence[Evidence]) -> str | None:
    """The type a split name's entities fold into, or None to leave them split because a run gave the name
    two types itself (a homonym it saw). Pure: the evidence decides, not its order."""
    by_run: dict[str | None, set[str]] = defaultdict(set)
    scores: dict[str, list[float]] = defaultdict(list)
    for e in entities:
        for etype, score, run in e.mentions:
            by_run[run].add(etype)
            scores[etype].append(float(score or 0.0))
    if not scores or any(len(types) > 1 for run, types in by_run.items() if run is not None):
        return None
    return preferred_type({t: (len(s), sum(sorted(s)) / len(s)) for t, s in scores.items()})


def agree_types(tx, names: Iterable[str], broader: Mapping[str, Sequence[str]] | None = None,
                symmetric: Iterable[str] = (), allowed_types: Iterable[str] | None = None) -> TypeAgreement:  # fmt: skip
    """Fold the entities of each of ``names`` that more than one entity holds into the agreed type, in the
    caller's transaction (see the module docstring). ``broader``: entity type -> its broader types (their
    labels go on a created entity too); ``allowed_types``: the label set's types (a type outside it is never
    created as a label)."""
    report = TypeAgreement()
    names = sorted({n for n in names if n})
    if not names:
        return report
    tx.run(LOCK_NAMES, names=names).consume()
    groups: dict[str, list[Evidence]] = defaultdict(list)
    set_by_person: dict[str, str] = {}
    for r in tx.run(READ_NAME_GROUPS, names=names):
        mentions = tuple((t, s, run) for t, s, run in r["mentions"])
        groups[r["name"]].append(Evidence(r["id"], r["type"], mentions))
        if r["person_decided"]:
            set_by_person[r["name"]] = r["set_type"]  # None: keep apart by the types the runs gave
    if not groups:
        return report
    name_of = {e.id: name for name, es in groups.items() for e in es}
    decided = {name_of[i] for i in tx.run(READ_DECIDED_ENTITIES, ids=sorted(name_of)).single()["decided"]}
    allowed = set(allowed_types) if allowed_types is not None else None
    symmetric = frozenset(symmetric)
    counts = defaultdict(int)
    for name in sorted(groups):
        entities = groups[name]
        split = len(entities) > 1
        etype = set_by_person.get(name)
        if name in set_by_person and etype is None:
            report.left_split["decided_by_person"] += split
            continue
        if etype is None:
            if name in decided:
                report.left_split["decided_by_person"] += split
                continue
            etype = agreed_type(entities)
            if etype is None:
                report.left_split["homonym_in_run"] += split
                continue
        if not split and entities[0].type == etype:
            continue  # one entity, and its mentions still agree on its type
        target = next((e.id for e in entities if e.type == etype), None)
        if target is None:
            if allowed is not None and etype not in allowed:
                report.left_split["type_not_in_label_set"] += split
                continue
            target = entity_id(name, etype)
            tx.run(create_canonical(etype, (broader or {}).get(etype, ())), canonical=target, name=name,
                   type=etype).consume()  # fmt: skip
            report.entities_created += 1
        for e in entities:
            if e.id != target:
                fold_entity(tx, e.id, target, symmetric, counts, why=f"type agreement of {name!r}")
    report.entities_folded = counts["merges_applied"]
    report.mentions_moved = counts["mentions_moved"]
    report.relations_moved = counts["relations_moved"]
    return report


@dataclass(frozen=True, slots=True)
class TypeDecision:
    """A person's word on the type of one name's entities, as stored in ``(:TypeDecision {name})``: one type
    for all (``set_type``), or none (``keep_apart``: a homonym, one entity per type its runs gave)."""

    name: str
    type: str | None  # None: keep the name's entities apart, one per type its runs gave (``keep_apart``)
    decided_by: str = "user"
    decided_at: str = ""
    note: str | None = None

    def properties(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def set_type(driver, name: str, etype: str, database: str | None = None, *, broader=None, symmetric: Iterable[str] = (),
             allowed_types: Iterable[str] | None = None, note: str | None = None,
             decided_by: str = "user") -> tuple[TypeDecision, TypeAgreement]:  # fmt: skip
    """Record that every entity of ``name`` (normalised) is an ``etype``, and fold them into it now, in one
    transaction. Every later load follows the decision (``agree_types``): a run typing the name otherwise
    writes its mentions to an entity that its own load folds in again. ``etype`` must be a type of the label
    set (``allowed_types``)."""
    if allowed_types is not None and etype not in set(allowed_types):
        raise ResolutionError(f"{etype!r} is not an entity type of the label set ({', '.join(sorted(allowed_types))})")
    decision = TypeDecision(name, etype, decided_by, datetime.now(timezone.utc).isoformat(timespec="seconds"), note)

    def work(tx) -> TypeAgreement:
        tx.run(WRITE_TYPE_DECISION, props=decision.properties()).consume()
        return agree_types(tx, [name], broader, symmetric, allowed_types)

    with driver.session(database=database) as session:
        return decision, session.execute_write(work)


def clear_type(driver, name: str, database: str | None = None, *, broader=None, symmetric: Iterable[str] = (),
               allowed_types: Iterable[str] | None = None) -> TypeAgreement:  # fmt: skip
    """Drop the person's type decision on ``name``; its mentions' evidence decides its type again, now."""

    def work(tx) -> TypeAgreement:
        if not tx.run(DELETE_TYPE_DECISION, name=name).single()["deleted"]:
            raise ResolutionError(f"no type decision on {name!r}")
        return agree_types(tx, [name], broader, symmetric, allowed_types)

    with driver.session(database=database) as session:
        return session.execute_write(work)


#: Every mention of one name, with the entity it sits on and the type its run gave it.
READ_NAME_MENTIONS = """
MATCH (p:Post)-[m:MENTIONS]->(e:Entity {name: $name})
RETURN e.id AS entity, e.type AS type, p.id AS post, m.start AS start, m.end AS end, coalesce(m.type, e.type) AS typed
ORDER BY entity, post, start
"""

MOVE_MENTION_ROWS = """
UNWIND $rows AS row
MATCH (p:Post {id: row.post})-[m:MENTIONS {start: row.start, end: row.end}]->(:Entity {id: row.source})
MATCH (c:Entity {id: row.target})
MERGE (p)-[n:MENTIONS {start: m.start, end: m.end}]->(c)
SET n += properties(m)
DELETE m
"""

READ_ENTITY_TRIPLES = f"""
MATCH (e:Entity {{id: $id}})-[r]-(x:Entity)
WHERE type(r) <> '{CANDIDATE_TYPE}' AND r.relation IS NOT NULL
RETURN elementId(r) AS rid, type(r) AS type, startNode(r) = e AS outgoing, x.id AS other, properties(r) AS props
ORDER BY type, outgoing DESC, other
"""

KEEP_EVIDENCE = """
MATCH ()-[r]->() WHERE elementId(r) = $rid
SET r.post_ids = $post_ids, r.scores = $scores, r.evidence_count = size($post_ids),
    r.max_score = reduce(m = 0.0, s IN $scores | CASE WHEN s > m THEN s ELSE m END)
WITH r WHERE size($post_ids) = 0
DELETE r
"""

#: Aliases from the mentions an entity keeps (sorted, as the loader keeps them), its ``merged_ids`` without the
#: ids split off (gone when none is left), and the entity itself when no mention is left.
SETTLE_SPLIT_ENTITY = """
MATCH (e:Entity {id: $id})
OPTIONAL MATCH (e)<-[m:MENTIONS]-()
WITH e, m.text AS surface ORDER BY surface
WITH e, [a IN collect(DISTINCT surface) WHERE a IS NOT NULL] AS aliases
WITH e, aliases, [i IN coalesce(properties(e).merged_ids, []) WHERE NOT i IN $split] AS merged
CALL (e, aliases) { WITH e, aliases WHERE size(aliases) = 0 DETACH DELETE e }
CALL (e, aliases, merged) {
  WITH e, aliases, merged WHERE size(aliases) > 0
  SET e.aliases = aliases, e.merged_ids = CASE WHEN size(merged) = 0 THEN null ELSE merged END
}
"""


def keep_apart(driver, name: str, database: str | None = None, *, broader=None, symmetric: Iterable[str] = (),
               allowed_types: Iterable[str] | None = None, note: str | None = None,
               decided_by: str = "user") -> tuple[TypeDecision, dict[str, int]]:  # fmt: skip
    """Record that ``name`` is a homonym (its entities are never folded into one type again) and split what was
    folded: every mention goes back to the entity of the type its run gave it (``MENTIONS.type``, created when
    gone), and each relation triple's evidence follows its post's mention. One transaction; returns the decision
    and the counts (``entities_created``, ``mentions_moved``, ``evidence_moved``)."""
    decision = TypeDecision(name, None, decided_by, datetime.now(timezone.utc).isoformat(timespec="seconds"), note)
    allowed = set(allowed_types) if allowed_types is not None else None
    symmetric = frozenset(symmetric)

    def work(tx) -> dict[str, int]:
        counts = dict.fromkeys(("entities_created", "mentions_moved", "evidence_moved"), 0)
        tx.run(WRITE_TYPE_DECISION, props=decision.properties()).consume()
        tx.run(LOCK_NAMES, names=[name]).consume()
        rows = [r.data() for r in tx.run(READ_NAME_MENTIONS, name=name)]
        existing = {r["entity"]: r["type"] for r in rows}
        moves, targets = [], {}  # mention rows to move; (source entity, post) -> target entity
        for r in rows:
            if r["typed"] == r["type"] or (allowed is not None and r["typed"] not in allowed):
                continue
            target = entity_id(name, r["typed"])
            if target not in existing and target not in targets.values():
                tx.run(create_canonical(r["typed"], (broader or {}).get(r["typed"], ())), canonical=target,
                       name=name, type=r["typed"]).consume()  # fmt: skip
                counts["entities_created"] += 1
            moves.append({"post": r["post"], "start": r["start"], "end": r["end"], "source": r["entity"],
                          "target": target})  # fmt: skip
            targets[(r["entity"], r["post"])] = target
        if not moves:
            return counts
        tx.run(MOVE_MENTION_ROWS, rows=moves).consume()
        counts["mentions_moved"] = len(moves)
        for source in sorted({m["source"] for m in moves}):
            counts["evidence_moved"] += _split_triples(tx, source, targets, symmetric)
        split_ids = sorted(set(targets.values()))
        for entity in sorted(set(existing) | set(split_ids)):
            tx.run(SETTLE_SPLIT_ENTITY, id=entity, split=split_ids).consume()
        return counts

    with driver.session(database=database) as session:
        return decision, session.execute_write(work)


def _split_triples(tx, source: str, targets: Mapping[tuple[str, str], str], symmetric: frozenset[str]) -> int:
    """Move the evidence of ``source``'s triples whose post's mention went to another entity (``targets``:
    (source, post) -> entity) onto that entity's copy of the triple (combined per post, as a merge combines it);
    returns how many (post, score) entries moved."""
    moved = 0
    for r in [rec.data() for rec in tx.run(READ_ENTITY_TRIPLES, id=source)]:
        props = dict(r["props"])
        keep: list[tuple[str, float]] = []
        go: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for post, score in zip(props.get("post_ids") or [], props.get("scores") or []):
            target = targets.get((source, post))
            (go[target] if target else keep).append((post, score))
        if not go:
            continue
        tx.run(KEEP_EVIDENCE, rid=r["rid"], post_ids=[p for p, _ in keep], scores=[s for _, s in keep]).consume()
        if cypher.relationship_type(props.get("relation")) != f"`{r['type']}`":
            raise cypher.InvalidIdentifier(f"relationship {r['type']} of entity {source} is not a relation triple of "
                                           f"the label set (relation={props.get('relation')!r}); not split")
        quoted = f"`{r['type']}`"  # checked against the relation name just above
        for target, evidence in sorted(go.items()):
            head, tail = (target, r["other"]) if r["outgoing"] else (r["other"], target)
            if props.get("relation") in symmetric and tail < head:
                head, tail = tail, head
            there = [dict(x["props"]) for x in tx.run(read_triples(quoted), pairs=[{"head": head, "tail": tail}])]
            part = {**props, "post_ids": [p for p, _ in evidence], "scores": [s for _, s in evidence]}
            combined = combine_evidence(there[0] if there else None, [part])
            tx.run(write_triples(quoted), rows=[{"head": head, "tail": tail, "props": combined}]).consume()
            moved += len(evidence)
    return moved


def person_types(driver, database: str | None = None) -> dict[str, str]:
    """Entity name -> the type a person set for it (``set_type``; not the names kept apart): what a run's
    plan carries, so that its typing and relations use the person's type."""
    return {d.name: d.type for d in read_type_decisions(driver, database) if d.type}


def read_type_decisions(driver, database: str | None = None) -> list[TypeDecision]:
    records, _, _ = driver.execute_query(READ_TYPE_DECISIONS, database_=database, routing_="r")
    return [TypeDecision(**{k: r["d"].get(k) for k in ("name", "type", "decided_by", "decided_at", "note")})
            for r in records]  # fmt: skip


#: Names ``agree_all_types`` decides per transaction (a graph may hold many split names: one transaction each
#: batch keeps the server's transaction memory bounded; every name is decided whole within its batch).
AGREE_ALL_BATCH = 1000


def agree_all_types(driver, database: str | None = None, broader: Mapping[str, Sequence[str]] | None = None,
                    symmetric: Iterable[str] = (), allowed_types: Iterable[str] | None = None,
                    batch: int = AGREE_ALL_BATCH) -> TypeAgreement:  # fmt: skip
    """``agree_types`` over every name the graph holds as more than one entity, ``batch`` names per
    transaction: for a graph loaded before this step existed (``mmkg entities agree-types``)."""
    records, _, _ = driver.execute_query(ALL_SPLIT_NAMES, database_=database, routing_="r")
    names = sorted(records[0]["names"])
    total = TypeAgreement()
    with driver.session(database=database) as session:
        for start in range(0, len(names), batch):
            total.merge(session.execute_write(agree_types, names[start:start + batch], broader, symmetric,
                                              allowed_types))  # fmt: skip
    return total
