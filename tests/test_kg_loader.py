"""The batched loader against a real Neo4j 5.26: idempotence, evidence, refusals, failures."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from mmkg.identity import entity_id
from kg_loader.records import MentionRow, PostRow, RelationRow
from kg_loader.writer import GraphWriter

pytestmark = pytest.mark.neo4j


def _post(pid: str) -> PostRow:
    return PostRow(pid, f"text of {pid}", "2026-11-01T10:00:00+00:00", "author", "en", "sample", "run-1")


def _mention(pid: str, name: str, etype: str, start: int, run_id: str = "run-1") -> MentionRow:
    return MentionRow(pid, entity_id(name, etype), etype, name.lower(), name, start, start + len(name), 0.9, "test/v1", "ls1", run_id)


def _relation(pid: str, head: tuple[str, str], rel: str, tail: tuple[str, str], score: float = 0.8) -> RelationRow:
    return RelationRow(entity_id(*head), entity_id(*tail), rel, pid, score, "test/v1", "ls1", "run-1")


def _batch():
    posts = [_post("p1"), _post("p2")]
    mentions = [
        _mention("p1", "Marta Silva", "Person", 0),
        _mention("p1", "Lisbon Falcons", "Organization", 20),
        _mention("p2", "Marta Silva", "Person", 5),
        _mention("p2", "Lisbon Falcons", "Organization", 30),
        _mention("p2", "Porto", "Location", 50),
    ]
    relations = [
        _relation("p1", ("Marta Silva", "Person"), "member_of", ("Lisbon Falcons", "Organization"), 0.7),
        _relation("p2", ("Marta Silva", "Person"), "member_of", ("Lisbon Falcons", "Organization"), 0.9),
        _relation("p2", ("Lisbon Falcons", "Organization"), "located_in", ("Porto", "Location")),
    ]
    return posts, mentions, relations


def _load(writer: GraphWriter, posts, mentions, relations):
    report = writer.upsert_posts(posts)
    report.merge(writer.upsert_mentions(mentions))
    report.merge(writer.upsert_relations(relations))
    return report


def snapshot(driver) -> tuple[list, list]:
    nodes, _, _ = driver.execute_query("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    rels, _, _ = driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN coalesce(a.id, a.sha256) AS a, type(r) AS type, properties(r) AS props, "
        "coalesce(b.id, b.sha256) AS b"
    )
    canon = lambda rows: sorted(json.dumps(r.data(), sort_keys=True, default=str) for r in rows)  # noqa: E731
    return canon(nodes), canon(rels)


def _crowded_batch(seed: int = 7):
    """200 posts over 100 entities and 1,500 triple rows: most triples have evidence from many posts."""
    rng = random.Random(seed)
    names = [(f"Person {i}", "Person") for i in range(60)] + [(f"Club {i}", "Organization") for i in range(40)]
    posts = [_post(f"p{i}") for i in range(200)]
    mentions = [_mention(p.id, *rng.choice(names), start) for p in posts for start in (0, 20, 40)]
    relations = []
    for _ in range(1500):
        head, tail = rng.sample(names, 2)
        relations.append(_relation(rng.choice(posts).id, head, rng.choice(["member_of", "located_in", "peer"]), tail,
                                   round(rng.random(), 3)))
    return posts, mentions, relations


def test_concurrent_writers_build_the_same_graph_as_one_writer(neo4j_driver):
    """Partitioned concurrent transactions change only speed: same nodes, relationships, properties
    (evidence lists in the same order), and a second load by either creates nothing."""
    batch = _crowded_batch()
    graphs = {}
    for writers in (1, 2, 3):
        neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        writer = GraphWriter(neo4j_driver, batch_size=37, writers=writers)
        writer.ensure_schema()
        first = _load(writer, *batch)
        assert first.relationships_created > 500 and not first.rejected
        graphs[writers] = snapshot(neo4j_driver)
        again = _load(writer, *batch)
        assert again.created == 0 and snapshot(neo4j_driver) == graphs[writers]
    assert graphs[2] == graphs[1] and graphs[3] == graphs[1]
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")


def test_schema_is_idempotent(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    writer.ensure_schema()
    records, _, _ = neo4j_driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN collect(name) AS names")
    assert {"post_id", "entity_id", "image_sha256"} <= set(records[0]["names"])


def test_loading_three_times_leaves_an_identical_graph(neo4j_driver):
    writer = GraphWriter(neo4j_driver, batch_size=2)
    writer.ensure_schema()
    first = _load(writer, *_batch())
    after_first = snapshot(neo4j_driver)
    for _ in range(2):
        again = _load(writer, *_batch())
        assert again.nodes_created == 0 and again.relationships_created == 0
        assert snapshot(neo4j_driver) == after_first
    assert first.nodes_created == 2 + 3  # posts + entities
    counts, _, _ = neo4j_driver.execute_query(
        "MATCH (n) WITH count(n) AS n MATCH ()-[r]->() RETURN n, count(r) AS r"
    )
    assert (counts[0]["n"], counts[0]["r"]) == (5, 5 + 2)  # 5 MENTIONS + 2 triples


def test_evidence_from_two_posts_lands_on_one_relationship(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    _load(writer, *_batch())
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (:Person {name: 'marta silva'})-[r:MEMBER_OF]->(:Organization) RETURN r"
    )
    assert len(records) == 1
    r = records[0]["r"]
    assert sorted(r["post_ids"]) == ["p1", "p2"]
    assert dict(zip(r["post_ids"], r["scores"])) == {"p1": pytest.approx(0.7), "p2": pytest.approx(0.9)}
    assert r["evidence_count"] == 2 and r["max_score"] == pytest.approx(0.9)
    assert r["relation"] == "member_of"


def test_rerun_with_new_score_replaces_the_posts_evidence(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts, mentions, relations = _batch()
    _load(writer, posts, mentions, relations)
    rescored = [_relation("p1", ("Marta Silva", "Person"), "member_of", ("Lisbon Falcons", "Organization"), 0.5)]
    writer.upsert_relations(rescored)
    records, _, _ = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN r.post_ids AS ids, r.scores AS s")
    assert dict(zip(records[0]["ids"], records[0]["s"])) == {"p1": pytest.approx(0.5), "p2": pytest.approx(0.9)}


def test_a_post_stating_a_triple_twice_is_one_piece_of_evidence(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts, mentions, relations = _batch()
    twice = relations + [_relation("p1", ("Marta Silva", "Person"), "member_of", ("Lisbon Falcons", "Organization"), 0.95)]
    for _ in range(2):
        _load(writer, posts, mentions, twice)
        records, _, _ = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN r.post_ids AS ids, r.scores AS s")
        assert len(records) == 1
        assert dict(zip(records[0]["ids"], records[0]["s"])) == {"p1": pytest.approx(0.95), "p2": pytest.approx(0.9)}
        assert len(records[0]["ids"]) == len(records[0]["s"]) == 2


def test_evidence_and_max_score_within_one_batch_and_across_runs(neo4j_driver):
    """Rows of one batch see each other's writes (no Eager); rows of another run go in their own group."""
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts = [_post("p1"), _post("p2"), _post("p3")]
    mentions = [_mention(p.id, "Marta Silva", "Person", 0) for p in posts] + [
        _mention(p.id, "Lisbon Falcons", "Organization", 20) for p in posts
    ]
    head, tail = ("Marta Silva", "Person"), ("Lisbon Falcons", "Organization")
    rows = [_relation("p1", head, "member_of", tail, 0.6), _relation("p2", head, "member_of", tail, 0.9)]
    later = RelationRow(entity_id(*head), entity_id(*tail), "member_of", "p3", 0.7, "test/v2", "ls1", "run-2")
    _load(writer, posts, mentions, rows + [later])
    records, _, _ = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN properties(r) AS r")
    assert len(records) == 1
    r = records[0]["r"]
    assert r["post_ids"] == ["p1", "p2", "p3"] and r["scores"] == pytest.approx([0.6, 0.9, 0.7])
    assert r["evidence_count"] == 3 and r["max_score"] == pytest.approx(0.9)
    assert r["first_run_id"] == "run-1" and r["run_id"] == "run-2" and r["model_version"] == "test/v2"
    # the best post is rescored down: max_score comes from the others, the lists stay parallel
    writer.upsert_relations([_relation("p2", head, "member_of", tail, 0.5)])
    r = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN properties(r) AS r").records[0]["r"]
    assert r["scores"] == pytest.approx([0.6, 0.5, 0.7]) and r["max_score"] == pytest.approx(0.7)
    assert r["evidence_count"] == 3


def test_upsert_plans_have_no_eager(neo4j_driver):
    """Eager would buffer every row of a batch between clauses (and once made evidence lists drift)."""
    from kg_loader import cypher

    GraphWriter(neo4j_driver).ensure_schema()
    params = {"rows": [], "entity_type": "Person", "relation": "member_of", "model_version": "v",
              "label_set_id": "ls", "run_id": "r"}  # fmt: skip
    for query in (cypher.upsert_mentions("Person"), cypher.upsert_relations("member_of")):
        with neo4j_driver.session() as session:
            plan = session.run("EXPLAIN " + query, params).consume().plan
        ops, todo = [], [plan]
        while todo:
            node = todo.pop()
            ops.append(node["operatorType"])
            todo.extend(node.get("children", []))
        assert not [op for op in ops if op.startswith("Eager")], ops


def test_entity_keeps_surface_forms_as_aliases(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    writer.upsert_posts([_post("p1")])
    writer.upsert_mentions([_mention("p1", "Marta Silva", "Person", 0), _mention("p1", "MARTA SILVA", "Person", 30)])
    records, _, _ = neo4j_driver.execute_query("MATCH (e:Entity:Person) RETURN e.aliases AS aliases")
    assert len(records) == 1 and sorted(records[0]["aliases"]) == ["MARTA SILVA", "Marta Silva"]


def test_malicious_and_unknown_labels_are_refused_and_the_rest_loads(neo4j_driver):
    writer = GraphWriter(neo4j_driver, allowed_entity_types={"Person", "Organization"}, allowed_relations={"member_of"})
    writer.ensure_schema()
    writer.upsert_posts([_post("p1")])
    evil_label = "Person`) DETACH DELETE e //"
    mentions = [
        _mention("p1", "Marta Silva", "Person", 0),
        _mention("p1", "Lisbon Falcons", "Organization", 20),
        MentionRow("p1", "x1", evil_label, "x", "x", 40, 41, 0.5, "t", "ls", "run-1"),
        _mention("p1", "Porto", "Location", 50),  # valid identifier, not in the label set
    ]
    relations = [
        _relation("p1", ("Marta Silva", "Person"), "member_of", ("Lisbon Falcons", "Organization")),
        _relation("p1", ("Marta Silva", "Person"), "x]->() DETACH DELETE h //", ("Lisbon Falcons", "Organization")),
    ]
    m_report = writer.upsert_mentions(mentions)
    r_report = writer.upsert_relations(relations)
    assert len(m_report.rejected) == 2 and len(r_report.rejected) == 1
    assert "invalid entity type label" in m_report.rejected[0].reason
    assert "not in the label set" in m_report.rejected[1].reason
    assert "invalid relation name" in r_report.rejected[0].reason
    records, _, _ = neo4j_driver.execute_query("MATCH (e:Entity) RETURN count(e) AS n")
    assert records[0]["n"] == 2
    records, _, _ = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN count(r) AS n")
    assert records[0]["n"] == 1


def test_retract_stale_replaces_a_posts_extraction(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts, mentions, relations = _batch()
    _load(writer, posts, mentions, relations)
    # Re-run of p2 with a new label set: Porto is now typed City and the located_in triple is gone.
    new_mentions = [m for m in mentions if m.post_id == "p2" and m.surface != "Porto"] + [
        _mention("p2", "Porto", "City", 50)
    ]
    new_relations = [r for r in relations if r.post_id == "p2" and r.relation == "member_of"]
    writer.retract_stale(["p2"], new_mentions, new_relations)
    writer.upsert_mentions(new_mentions)
    writer.upsert_relations(new_relations)
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (:Post {id: 'p2'})-[:MENTIONS]->(e) RETURN collect(e.type) AS types"
    )
    assert sorted(records[0]["types"]) == ["City", "Organization", "Person"]
    records, _, _ = neo4j_driver.execute_query("MATCH ()-[r:LOCATED_IN]->() RETURN count(r) AS n")
    assert records[0]["n"] == 0  # its only evidence was p2
    records, _, _ = neo4j_driver.execute_query("MATCH (e:Location) RETURN count(e) AS n")
    assert records[0]["n"] == 0  # no mention left: the entity went with it
    records, _, _ = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN r.post_ids AS ids")
    assert sorted(records[0]["ids"]) == ["p1", "p2"]


def test_a_triple_losing_several_posts_in_one_retraction_keeps_the_rest_exactly(neo4j_driver):
    """Three posts support one triple; two of them are re-run in one load without it (a new detector,
    say): the triple keeps the third post's evidence and score, with no stale or null entries."""
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts = [_post(p) for p in ("p1", "p2", "p3")]
    mentions = [_mention(p, name, etype, start) for p in ("p1", "p2", "p3")
                for name, etype, start in (("Marta Silva", "Person", 0), ("Lisbon Falcons", "Organization", 20))]
    relations = [_relation(p, ("Marta Silva", "Person"), "member_of", ("Lisbon Falcons", "Organization"), score)
                 for p, score in (("p1", 0.5), ("p2", 0.6), ("p3", 0.7))]
    _load(writer, posts, mentions, relations)
    kept_mentions = [m for m in mentions if m.post_id in ("p1", "p3")]
    writer.retract_stale(["p1", "p3"], kept_mentions, [])
    records, _, _ = neo4j_driver.execute_query(
        "MATCH ()-[r:MEMBER_OF]->() RETURN r.post_ids AS ids, r.scores AS scores, r.evidence_count AS n, "
        "r.max_score AS best")
    assert [r.data() for r in records] == [{"ids": ["p2"], "scores": [0.6], "n": 1, "best": 0.6}]
    writer.retract_stale(["p2"], [m for m in mentions if m.post_id == "p2"], [])
    records, _, _ = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN count(r) AS n")
    assert records[0]["n"] == 0


def test_server_stopped_mid_load_fails_loudly_and_rerun_completes_without_duplicates(neo4j_server):
    posts = [_post(f"p{i}") for i in range(3000)]
    mentions = [_mention(f"p{i}", f"Person {i % 700}", "Person", 0) for i in range(3000)]
    driver = neo4j_server.driver(max_transaction_retry_time=2.0)
    driver.execute_query("MATCH (n) DETACH DELETE n")
    writer = GraphWriter(driver, batch_size=50)
    writer.ensure_schema()
    errors: list[BaseException] = []

    def load():
        try:
            writer.upsert_posts(posts)
            writer.upsert_mentions(mentions)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1.0)
    neo4j_server.stop()
    thread.join(timeout=120)
    assert not thread.is_alive()
    driver.close()
    neo4j_server.start()
    driver = neo4j_server.driver()
    try:
        if errors:  # failed loudly with a driver error, not silently
            import neo4j.exceptions

            assert isinstance(errors[0], neo4j.exceptions.Neo4jError | neo4j.exceptions.DriverError)
        report = GraphWriter(driver, batch_size=500).upsert_posts(posts)
        report.merge(GraphWriter(driver, batch_size=500).upsert_mentions(mentions))
        records, _, _ = driver.execute_query(
            "MATCH (p:Post) WITH count(p) AS posts MATCH (e:Entity) WITH posts, count(e) AS entities "
            "MATCH ()-[m:MENTIONS]->() RETURN posts, entities, count(m) AS mentions"
        )
        assert records[0].data() == {"posts": 3000, "entities": 700, "mentions": 3000}
    finally:
        driver.execute_query("MATCH (n) DETACH DELETE n")
        driver.close()
