"""Every Cypher statement mmkg runs, built by small pure functions.

Values always travel as parameters. Labels and relationship types cannot be parameters in a
``MERGE`` on an index, so the few that come from users' label sets pass ``label()`` /
``relationship_type()`` first: a strict pattern, then backtick quoting. This module must never
interpolate anything else into query text.
"""

from __future__ import annotations

import re

# Whole-string patterns, used with ``fullmatch`` (``$`` would accept a trailing newline).
_LABEL = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
_REL_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Labels of the schema's own nodes: never an entity type (``EntityNameLock`` nodes exist only inside a
#: load's transaction, ``kg_loader.type_agreement``).
SCHEMA_LABELS = frozenset({"Entity", "Post", "Image", "IngestRun", "MergeDecision", "TypeDecision", "EntityNameLock"})


class InvalidIdentifier(ValueError):
    """A label or relationship type that is not safe to put into a query."""


def label(name: str) -> str:
    """An entity-type label, validated and quoted: ``Person`` -> ``\\`Person\\```."""
    if not isinstance(name, str) or not _LABEL.fullmatch(name) or name in SCHEMA_LABELS:
        raise InvalidIdentifier(f"invalid entity type label {name!r}: must match {_LABEL.pattern}")
    return f"`{name}`"


def relationship_type(relation: str) -> str:
    """A relation name from the label set -> quoted relationship type: ``member_of`` -> ``\\`MEMBER_OF\\```."""
    if not isinstance(relation, str) or not _REL_NAME.fullmatch(relation):
        raise InvalidIdentifier(f"invalid relation name {relation!r}: must match {_REL_NAME.pattern}")
    return f"`{relation.upper()}`"


SCHEMA_STATEMENTS: tuple[str, ...] = (
    "CREATE CONSTRAINT post_id IF NOT EXISTS FOR (p:Post) REQUIRE p.id IS UNIQUE",
    "CREATE CONSTRAINT image_sha256 IF NOT EXISTS FOR (i:Image) REQUIRE i.sha256 IS UNIQUE",
    "CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.id IS UNIQUE",
    "CREATE CONSTRAINT ingest_run_id IF NOT EXISTS FOR (r:IngestRun) REQUIRE r.id IS UNIQUE",
    # Entity-resolution decisions (kg_loader.resolution), which every load re-applies.
    "CREATE CONSTRAINT merge_decision_id IF NOT EXISTS FOR (d:MergeDecision) REQUIRE d.id IS UNIQUE",
    # A person's word on a name's type (kg_loader.type_agreement.set_type), which every load's agreement follows.
    "CREATE CONSTRAINT type_decision_name IF NOT EXISTS FOR (d:TypeDecision) REQUIRE d.name IS UNIQUE",
    # A person's rejection of a relation triple (kg_loader.relation_review), which every load re-applies.
    "CREATE CONSTRAINT relation_decision_id IF NOT EXISTS FOR (d:RelationDecision) REQUIRE d.id IS UNIQUE",
    # One load at a time decides a name's type across runs (kg_loader.type_agreement): its MERGE on this key
    # waits for another load holding the name until that one commits. No such node outlives its transaction.
    "CREATE CONSTRAINT entity_name_lock IF NOT EXISTS FOR (l:EntityNameLock) REQUIRE l.name IS UNIQUE",
    "CREATE INDEX entity_name IF NOT EXISTS FOR (e:Entity) ON (e.name)",
    "CREATE INDEX entity_type IF NOT EXISTS FOR (e:Entity) ON (e.type)",
    "CREATE INDEX post_created_at IF NOT EXISTS FOR (p:Post) ON (p.created_at)",
    # A shard's load finds the posts of its partition and id range that a re-run no longer has.
    "CREATE INDEX post_partition_id IF NOT EXISTS FOR (p:Post) ON (p.partition, p.id)",
)

#: One version of a post per id. A row replaces the stored post when both come from the same
#: landing partition (a re-run of a partition is the truth about it: a corrected post replaces the
#: old one whatever its ``created_at``), or else when it is not older, comparing ``(created_at,
#: digest)`` (``records.post_digest``: a hash of the post's content); so whichever order two days
#: holding one id are loaded in, the later ``created_at`` wins, and a tie goes to the larger digest.
#: The ``SET``/``REMOVE`` of a dummy property takes the post's write lock before its version is
#: read: two loads of one post at once (overlapping runs) are decided one after the other, never
#: both against the same old version. Returns one row per input row: ``wins`` false means the graph
#: keeps a version from another partition, and nothing else of this row's post is written.
UPSERT_POSTS = """
UNWIND $rows AS row
MERGE (p:Post {id: row.id})
SET p.mmkg_lock = true
REMOVE p.mmkg_lock
WITH p, row, datetime(row.created_at) AS at
WITH p, row, at, (p.created_at IS NULL OR coalesce(p.partition, '') = coalesce(row.partition, '')
                  OR at > p.created_at
                  OR (at = p.created_at AND row.digest >= coalesce(p.digest, ''))) AS wins
FOREACH (_ IN CASE WHEN wins THEN [1] ELSE [] END |
  SET p.text = row.text, p.created_at = at, p.author = row.author, p.lang = row.lang, p.source = row.source,
      p.run_id = row.run_id, p.digest = row.digest, p.partition = row.partition)
RETURN row.id AS id, wins, elementId(p) AS element_id
"""

#: ``HAS_IMAGE`` carries the reference the post used (``uri``); ``Image.uri`` is the smallest of
#: its posts' references, whatever order they were loaded in (``UNLINK_STALE_IMAGES`` recomputes it).
#: Rows are unique per (post, image): ``GraphWriter.upsert_images`` keeps a post's smallest reference.
UPSERT_IMAGES = """
UNWIND $rows AS row
MATCH (p:Post {id: row.post_id})
MERGE (i:Image {sha256: row.sha256})
SET i.width = row.width, i.height = row.height,
    i.uri = CASE WHEN i.uri IS NULL OR row.uri < i.uri THEN row.uri ELSE i.uri END
MERGE (p)-[h:HAS_IMAGE]->(i)
SET h.uri = row.uri
RETURN count(*) AS written
"""

#: Before a post's images are written: drop its ``HAS_IMAGE`` links that the new version no longer
#: has (``keep``: ``sha256|uri``), then an image linked by no post goes, and the others' ``uri`` is
#: recomputed from the links left.
UNLINK_STALE_IMAGES = """
UNWIND $posts AS post
MATCH (p:Post {id: post.id})-[h:HAS_IMAGE]->(i:Image)
WHERE NOT (i.sha256 + '|' + coalesce(h.uri, '')) IN post.keep
DELETE h
WITH DISTINCT i
CALL (i) {
  OPTIONAL MATCH (i)<-[h:HAS_IMAGE]-()
  RETURN count(h) AS links, min(h.uri) AS uri
}
CALL (i, links) { WITH i, links WHERE links = 0 DETACH DELETE i }
CALL (i, links, uri) { WITH i, links, uri WHERE links > 0 SET i.uri = coalesce(uri, i.uri) }
"""

#: Posts of one landing partition, in one shard's id range, that the shard no longer holds: the
#: re-run of a corrected partition retracts them. ``IS :: STRING`` keeps the planner on the
#: ``(partition, id)`` index when there is no upper bound.
FIND_VANISHED_POSTS = """
MATCH (p:Post)
WHERE p.partition = $partition AND p.id >= $lo AND p.id IS :: STRING AND NOT p.id IN $keep
RETURN p.id AS id ORDER BY id
"""
FIND_VANISHED_POSTS_BELOW = """
MATCH (p:Post)
WHERE p.partition = $partition AND p.id >= $lo AND p.id < $hi AND NOT p.id IN $keep
RETURN p.id AS id ORDER BY id
"""

#: After their mentions, evidence and image links were retracted.
DELETE_POSTS = """
UNWIND $ids AS id
MATCH (p:Post {id: id})
DETACH DELETE p
"""


#: Prefix of the bulk upserts: keep the cached plan when the graph's statistics drift. Their plans are
#: unique-index seeks whatever the graph's size, so a re-plan (Neo4j re-plans a cached query once the
#: counts it was planned on diverge, i.e. again and again while a load grows the graph) only costs
#: server CPU. Per 100k triples (medians of 4 interleaved loads, ``python -m bench.load_profile``,
#: bench/results/load_profile.txt): server time in statements 4.66 -> 3.54 s, server CPU 4.82 -> 4.42 s;
#: the wall time did not move on the loaded 2-core box it ran on (6.37 vs 6.36 s).
NO_REPLAN = "CYPHER replan=skip"


def upsert_mentions(entity_type: str, broader: tuple[str, ...] = ()) -> str:
    """Mentions of one entity type: MERGE the entity on its constrained id, label it, link the post.

    ``broader``: the types this one is a narrower kind of (``Ontology.lineage``), nearest first: the node
    carries their labels too, so ``(:Organization)`` finds a ``SportsTeam``; ``e.type`` stays the narrowest.

    The MENTIONS relationship is keyed by its span, so a re-run updates it in place. Rows carry
    only what differs per mention (``post_id, entity_id, name, surface, start, end, score``); the
    values shared by a batch are parameters: ``$entity_type, $model_version, $label_set_id,
    $run_id``. ``m.type`` is the type the run gave this mention: it stays when type agreement
    (``kg_loader.type_agreement``) moves the mention to its name's agreed entity. Every SET names its properties and the aliases edit happens only ON MATCH, so the
    plan has no Eager: rows stream, and a later row of the batch sees an earlier row's entity.
    ``aliases`` stay sorted (a new surface form is inserted in place), so they do not depend on
    the order posts were loaded in. Returns ``written``: rows whose post was there (the others
    are counted as missing by the writer), and the ``elementId`` of each row's entity node (``ids``,
    ``element_ids``: parallel lists), which the writer hands to ``upsert_relations_by_element_id``.
    """
    labels = ":".join(label(t) for t in (entity_type, *broader))
    return f"""{NO_REPLAN}
UNWIND $rows AS row
MATCH (p:Post {{id: row.post_id}})
MERGE (e:Entity {{id: row.entity_id}})
  ON CREATE SET e:{labels},
                e.name = row.name, e.type = $entity_type, e.aliases = [row.surface], e.first_run_id = $run_id
  ON MATCH SET e:{labels},
               e.aliases = CASE WHEN row.surface IN e.aliases THEN e.aliases
                 ELSE [a IN e.aliases WHERE a < row.surface] + row.surface + [a IN e.aliases WHERE a > row.surface] END
MERGE (p)-[m:MENTIONS {{start: row.start, end: row.end}}]->(e)
SET m.text = row.surface, m.type = $entity_type, m.score = row.score, m.model_version = $model_version,
    m.label_set_id = $label_set_id, m.run_id = $run_id
RETURN count(*) AS written, collect(row.entity_id) AS ids, collect(elementId(e)) AS element_ids
"""


#: The rows of ``upsert_mentions_as_lists``, in this order.
MENTION_ROW = ("post_id", "entity_id", "name", "surface", "start", "end", "score")


def upsert_mentions_as_lists(entity_type: str, broader: tuple[str, ...] = ()) -> str:
    """``upsert_mentions`` reading each row as a list (``MENTION_ROW``) instead of a map: no key strings
    to pack, send and decode per row (the bulk writer's form; ``upsert_mentions`` stays the readable one)."""
    return _as_lists(upsert_mentions(entity_type, broader), MENTION_ROW)


_MENTION_POST_BY_KEY = "MATCH (p:Post {id: row.post_id})\n"
#: The rows of ``upsert_mentions_by_element_id``: the post node's ``elementId``, ``MENTION_ROW``, the row's
#: index in the batch.
MENTION_ROW_BY_ELEMENT_ID = ("p", *MENTION_ROW, "i")
#: The post found by the ``elementId`` the posts stage returned (``UPSERT_POSTS``), checked to still be the
#: row's post (an element id names a node only while it exists: Neo4j reuses the ids of deleted nodes). The
#: check is the ``id`` alone, as for the triples' endpoints: a reused id fools it only if the post was deleted
#: after this writer's posts stage and its node id went to a node that is no ``Post`` but has the same ``id``
#: (entities' ids are 32-hex-digit hashes); in ``write_atomically`` the transaction holds the post's lock, so
#: it cannot be deleted at all. Adding ``p:Post`` cost the whole gain: entity stage's server CPU per 50k
#: mentions 2.00 s by key, 1.98 s by element id with the label test, 1.85 s with the id alone (load_ideas.md).
_MENTION_POST_BY_ELEMENT_ID = """MATCH (p) WHERE elementId(p) = row.p
WITH * WHERE p.id = row.post_id
"""


def upsert_mentions_by_element_id(entity_type: str, broader: tuple[str, ...] = ()) -> str:
    """``upsert_mentions_as_lists`` with the post found by the ``elementId`` ``UPSERT_POSTS`` returned instead
    of a unique-index seek on ``Post.id`` per row (rows: ``MENTION_ROW_BY_ELEMENT_ID``). A row whose element id
    no longer names its post writes nothing; ``done`` lists the indices of the rows written, and the writer
    re-sends the others by key (``upsert_mentions_as_lists``) in the same transaction, as the triples do
    (``upsert_relations_by_element_id``)."""
    query = upsert_mentions(entity_type, broader)
    if _MENTION_POST_BY_KEY not in query or " AS element_ids\n" not in query:
        raise ValueError("upsert_mentions no longer has the shape upsert_mentions_by_element_id rewrites")
    query = (query.replace(_MENTION_POST_BY_KEY, _MENTION_POST_BY_ELEMENT_ID)
             .replace(" AS element_ids\n", " AS element_ids, collect(row.i) AS done\n"))
    return _as_lists(query, MENTION_ROW_BY_ELEMENT_ID)


def _as_lists(query: str, layout: tuple[str, ...]) -> str:
    position = {name: i for i, name in enumerate(layout)}
    try:
        return _ROW_FIELD.sub(lambda m: f"row[{position[m.group(1)]}]", query)
    except KeyError as exc:
        raise ValueError(f"the query reads a row field not in its list layout: {exc}") from None


def upsert_relations(relation: str) -> str:
    """Triples of one relation: one relationship per (head, type, tail); evidence per post.

    ``post_ids`` and ``scores`` are parallel lists, sorted by post id: a post already present has
    its score replaced (re-runs are idempotent), a new post is inserted in its place (evidence
    accumulates, and the lists do not depend on the order shards were loaded in). Rows must be
    unique per (head, relation, tail, post): ``GraphWriter.upsert_relations`` ensures it. Rows
    carry ``head_id, tail_id, post_id, score``; ``$relation, $model_version, $label_set_id,
    $run_id`` are shared by the batch. Returns ``written``: rows whose head and tail entities were
    there; a row whose ``MATCH`` finds no head or tail writes nothing and is not counted.

    A new relationship gets its final properties ON CREATE, each named (``SET r.a = ..``, not ``r += {map}``:
    with rows as lists, ``upsert_relations_by_element_id``, that cut the triple stage's server CPU 3.24 -> 2.92 s
    per 100k rows, bench/results/load_ideas.md). ON MATCH names each property it sets (no map of unknown keys,
    so the planner needs no Eager and rows stream), in an order where every item reads only properties not yet
    set by an earlier item: the result is the same whether the items are applied one by one or all at once.
    """
    return f"""{NO_REPLAN}
UNWIND $rows AS row
MATCH (h:Entity {{id: row.head_id}})
MATCH (t:Entity {{id: row.tail_id}})
MERGE (h)-[r:{relationship_type(relation)}]->(t)
  ON CREATE SET r.relation = $relation, r.post_ids = [row.post_id], r.scores = [row.score], r.evidence_count = 1,
                r.max_score = row.score, r.first_run_id = $run_id, r.model_version = $model_version,
                r.label_set_id = $label_set_id, r.run_id = $run_id
  ON MATCH SET
    r.max_score = CASE WHEN row.post_id IN r.post_ids
      THEN reduce(m = row.score, i IN range(0, size(r.post_ids) - 1) |
                  CASE WHEN r.post_ids[i] <> row.post_id AND r.scores[i] > m THEN r.scores[i] ELSE m END)
      ELSE CASE WHEN coalesce(r.max_score, 0.0) > row.score THEN r.max_score ELSE row.score END END,
    r.scores = CASE WHEN row.post_id IN r.post_ids
      THEN [i IN range(0, size(r.post_ids) - 1) |
            CASE WHEN r.post_ids[i] = row.post_id THEN row.score ELSE r.scores[i] END]
      ELSE [i IN range(0, size(r.post_ids) - 1) WHERE r.post_ids[i] < row.post_id | r.scores[i]] + row.score
           + [i IN range(0, size(r.post_ids) - 1) WHERE r.post_ids[i] > row.post_id | r.scores[i]] END,
    r.evidence_count = CASE WHEN row.post_id IN r.post_ids THEN r.evidence_count ELSE size(r.post_ids) + 1 END,
    r.post_ids = CASE WHEN row.post_id IN r.post_ids THEN r.post_ids
      ELSE [x IN r.post_ids WHERE x < row.post_id] + row.post_id + [x IN r.post_ids WHERE x > row.post_id] END,
    r.model_version = $model_version, r.label_set_id = $label_set_id, r.run_id = $run_id
RETURN count(*) AS written
"""

_RELATION_ENDPOINTS_BY_KEY = """UNWIND $rows AS row
MATCH (h:Entity {id: row.head_id})
MATCH (t:Entity {id: row.tail_id})
"""
#: The rows of ``upsert_relations_by_element_id`` are lists, in this order (a list travels and decodes
#: faster than a map of named fields: no key strings packed, sent and decoded per row).
RELATION_ROW_BY_ELEMENT_ID = ("h", "t", "head_id", "tail_id", "post_id", "score", "i")
#: Endpoints found by the ``elementId`` a mention MERGE returned, checked to still be the entity of
#: the row (an element id names a node only while it exists: Neo4j reuses the ids of deleted nodes).
#: The check is the ``id`` alone: an entity id is a 32-hex-digit hash (``mmkg.identity``) that no
#: other node's ``id`` equals. (Adding ``h:Entity AND t:Entity`` cost 0.7 s more server CPU per 100k
#: triples, as much as the two index seeks it replaces.)
_RELATION_ENDPOINTS_BY_ELEMENT_ID = """UNWIND $rows AS row
MATCH (h) WHERE elementId(h) = row[0]
MATCH (t) WHERE elementId(t) = row[1]
WITH * WHERE h.id = row[2] AND t.id = row[3]
"""
_ROW_FIELD = re.compile(r"\brow\.([a-z_]+)\b")


def upsert_relations_by_element_id(relation: str) -> str:
    """``upsert_relations`` with its endpoints found by ``elementId`` instead of two unique-index seeks
    per row; the MERGE and its evidence updates are the same text, reading the row as a list
    (``RELATION_ROW_BY_ELEMENT_ID``: the element ids of the head and tail nodes, the row's fields, and its
    index in the batch; per 100k triples, lists and the named ON CREATE properties together: server CPU
    3.24 -> 2.92 s, Python 0.70 -> 0.63 s, medians of 6 interleaved triple stages). A row whose
    element id no longer names its entity (the node was deleted, its id reused) writes nothing; ``done``
    lists the indices of the rows written, and the writer re-sends the others by key
    (``upsert_relations``), in the same transaction.

    Per 100k triples (the triple stage alone, 2 writers, medians of 5 interleaved loads on one server,
    load average 4-5): server CPU 3.62 -> 3.00 s, Python CPU 0.59 -> 0.90 s (longer rows); the id
    check costs 0.33 s of server CPU per 100k rows against 1.0 s for no check at all.
    """
    query = upsert_relations(relation)
    if _RELATION_ENDPOINTS_BY_KEY not in query or " AS written" not in query:
        raise ValueError("upsert_relations no longer has the shape upsert_relations_by_element_id rewrites")
    query = (query.replace(_RELATION_ENDPOINTS_BY_KEY, _RELATION_ENDPOINTS_BY_ELEMENT_ID)
             .replace(" AS written", " AS written, collect(row.i) AS done"))
    return _as_lists(query, RELATION_ROW_BY_ELEMENT_ID)


#: Which of ``$ids`` are not entities in the graph (names the endpoints a relation batch missed).
MISSING_ENTITIES = """
UNWIND $ids AS id
OPTIONAL MATCH (e:Entity {id: id})
WITH id, e WHERE e IS NULL
RETURN collect(id) AS missing
"""


#: Before a post's new extraction is written: drop its MENTIONS that the new extraction no longer
#: has (label set or model changed, the text was corrected: ``keep`` is ``entity|start|end|surface``),
#: so a re-run replaces rather than adds; an entity left with no mention at all goes too (its
#: triples' evidence was retracted just before, by RETRACT_STALE_EVIDENCE), and one that keeps some
#: gets its ``aliases`` recomputed (sorted) from the mentions left.
RETRACT_STALE_MENTIONS = """
UNWIND $posts AS post
MATCH (p:Post {id: post.id})-[m:MENTIONS]->(e:Entity)
WHERE NOT (e.id + '|' + toString(m.start) + '|' + toString(m.end) + '|' + coalesce(m.text, '')) IN post.keep
DELETE m
WITH DISTINCT e
CALL (e) {
  OPTIONAL MATCH (e)<-[m:MENTIONS]-()
  WITH DISTINCT m.text AS surface ORDER BY surface
  RETURN collect(surface) AS aliases
}
CALL (e, aliases) { WITH e, aliases WHERE size(aliases) = 0 DETACH DELETE e }
CALL (e, aliases) { WITH e, aliases WHERE size(aliases) > 0 SET e.aliases = aliases }
"""

#: Same for relation evidence contributed by a post: remove the post from triples it no longer
#: supports, and delete triples left with no evidence at all. One row per triple (the posts that
#: retract from it collected first): with a row per (post, triple), a triple losing two posts of one
#: batch had its lists rewritten from stale indices (null entries, and the load failed).
RETRACT_STALE_EVIDENCE = """
UNWIND $posts AS post
MATCH (p:Post {id: post.id})-[:MENTIONS]->(h:Entity)-[r]->(t:Entity)
WHERE post.id IN r.post_ids AND NOT (h.id + '|' + type(r) + '|' + t.id) IN post.keep
WITH r, collect(DISTINCT post.id) AS gone
WITH r, [i IN range(0, size(r.post_ids) - 1) WHERE NOT r.post_ids[i] IN gone] AS kept
SET r.post_ids = [i IN kept | r.post_ids[i]], r.scores = [i IN kept | r.scores[i]]
SET r.evidence_count = size(r.post_ids),
    r.max_score = reduce(m = 0.0, s IN r.scores | CASE WHEN s > m THEN s ELSE m END)
WITH r WHERE r.evidence_count = 0
DELETE r
"""

RECORD_RUN = """
MERGE (r:IngestRun {id: $run_id})
SET r += $props
"""

COUNT_GRAPH = """
CALL () { MATCH (n) RETURN count(n) AS nodes }
CALL () { MATCH ()-[r]->() RETURN count(r) AS relationships }
RETURN nodes, relationships
"""
