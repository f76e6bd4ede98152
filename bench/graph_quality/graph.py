"""The benchmark's side of Neo4j: a throw-away server, loading through the project's loader, and the
Cypher every number is computed from."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.graph_quality.scoring import Span, TripleInstance

PASSWORD = "mmkg-graph-quality"

#: Every (relationship, supporting post) between entities, with the entities' (normalised) names and
#: the mention spans of its head and its tail in that post (``MENTIONS`` keeps each mention's
#: ``start``/``end``).
RELATION_INSTANCES = """
MATCH (h:Entity)-[r]->(t:Entity)
UNWIND range(0, size(r.post_ids) - 1) AS i
WITH h, r, t, r.post_ids[i] AS post_id, r.scores[i] AS score
MATCH (p:Post {id: post_id})
RETURN post_id, type(r) AS rel_type, r.relation AS relation, h.id AS head_id, t.id AS tail_id,
       h.name AS head_name, t.name AS tail_name, r.evidence_count AS evidence_count, score,
       [(p)-[m:MENTIONS]->(h) | [m.start, m.end]] AS head_spans,
       [(p)-[m:MENTIONS]->(t) | [m.start, m.end]] AS tail_spans
"""

#: Every mention in the graph: post, span, the entity's type and (normalised) name.
MENTIONS = """
MATCH (p:Post)-[m:MENTIONS]->(e:Entity)
RETURN p.id AS post_id, m.start AS start, m.end AS end, e.type AS type, e.name AS name
"""

GRAPH_SHAPE = """
CALL () { MATCH (p:Post) RETURN count(p) AS posts }
CALL () { MATCH (e:Entity) RETURN count(e) AS entities }
CALL () { MATCH (:Post)-[m:MENTIONS]->(:Entity) RETURN count(m) AS mentions }
CALL () { MATCH (:Entity)-[r]->(:Entity) RETURN count(r) AS triples, coalesce(sum(r.evidence_count), 0) AS evidence }
CALL () { MATCH (e:Entity)-[r]->(e) RETURN count(r) AS self_loops }
CALL () {
  MATCH (a:Entity)-[r1]->(b:Entity)-[r2]->(a) WHERE a.id < b.id
  RETURN count(DISTINCT a.id + '|' + b.id) AS both_direction_pairs,
         count(DISTINCT CASE WHEN type(r1) = type(r2) THEN a.id + '|' + b.id END) AS both_direction_same_type_pairs
}
RETURN posts, entities, mentions, triples, evidence, self_loops, both_direction_pairs, both_direction_same_type_pairs
"""

TRIPLES_BY_TYPE = """
MATCH (:Entity)-[r]->(:Entity) RETURN type(r) AS rel_type, count(r) AS triples ORDER BY rel_type
"""


@contextlib.contextmanager
def throwaway_neo4j() -> Iterator[object]:
    """A Neo4j 5.26 server of its own (free 127.0.0.1 ports, data in a temporary directory): yields a
    driver; stops the server and deletes its data at the end."""
    from app.local_airflow import free_port
    from kg_loader.writer import connect
    from mmkg.settings import Neo4jSettings
    from neo4j_server import manager as server

    home = Path(tempfile.mkdtemp(prefix="mmkg-graph-quality-neo4j-"))
    bolt, http = free_port(), free_port()
    settings = Neo4jSettings(uri=f"bolt://127.0.0.1:{bolt}", user="neo4j", password=PASSWORD, database="neo4j",
                             bolt_port=bolt, http_port=http, home=home)
    server.start(settings)
    driver = None
    try:
        driver = connect(settings)
        yield driver
    finally:
        if driver is not None:
            driver.close()
        server.stop(settings)
        shutil.rmtree(home, ignore_errors=True)


def clear(driver) -> None:
    """Delete every node (the schema's constraints and indexes stay); an implicit transaction, as
    ``CALL { } IN TRANSACTIONS`` requires."""
    with driver.session() as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()
        left = session.run("MATCH (n) RETURN count(n) AS n").single()["n"]
    if left:
        raise RuntimeError(f"graph not empty after clearing: {left} nodes")


def load(driver, ontology, posts, typed, relations, run_id: str) -> dict:
    """Clear the graph, then write through the project's loader exactly as ``load_shard`` does."""
    from kg_loader.load import load_extraction, writer_for

    clear(driver)
    writer = writer_for(driver, ontology)
    writer.ensure_schema()
    return load_extraction(writer, posts, typed, relations, run_id).as_dict()


def query(driver, cypher: str, **params) -> list[dict]:
    records, _, _ = driver.execute_query(cypher, params, routing_="r")
    return [r.data() for r in records]


def triple_instances(driver, type_to_relation: dict[str, str]) -> list[TripleInstance]:
    """``RELATION_INSTANCES`` as records; relationship types mapped back to MNRE names."""
    out = []
    for row in query(driver, RELATION_INSTANCES):
        out.append(TripleInstance(
            post_id=row["post_id"],
            relation=type_to_relation.get(row["rel_type"], row["rel_type"]),
            head_id=row["head_id"],
            tail_id=row["tail_id"],
            head_spans=_spans(row["head_spans"]),
            tail_spans=_spans(row["tail_spans"]),
            evidence_count=int(row["evidence_count"]),
            score=row["score"],
            head_name=row["head_name"],
            tail_name=row["tail_name"],
        ))
    return out


def _spans(rows: Sequence[Sequence[int]]) -> tuple[Span, ...]:
    return tuple(sorted((int(s), int(e)) for s, e in rows))


def mentions(driver) -> list[dict]:
    return query(driver, MENTIONS)


def shape(driver) -> dict:
    rows = query(driver, GRAPH_SHAPE)
    out = {k: int(v) for k, v in rows[0].items()}
    out["triples_by_type"] = {r["rel_type"]: int(r["triples"]) for r in query(driver, TRIPLES_BY_TYPE)}
    return out
