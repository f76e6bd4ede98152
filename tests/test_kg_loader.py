"""The batched loader against a real Neo4j 5.26: idempotence, evidence, refusals, failures."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest

from mmkg.identity import entity_id
from kg_loader.records import MentionRow, PostRow, RelationRow
from kg_loader.writer import GraphWriter, connect
from tests.conftest import graph_snapshot

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
        assert first.relationships_created > 500
        # some random triples name an entity no post mentions: refused as missing, never counted as written
        assert first.rejected and all("not in the graph" in r.reason for r in first.rejected)
        assert first.rows["relation"] + first.dropped["relations_missing_endpoint"] == len(
            {(r.head_id, r.relation, r.tail_id, r.post_id) for r in batch[2]})
        graphs[writers] = graph_snapshot(neo4j_driver)
        again = _load(writer, *batch)
        assert again.created == 0 and graph_snapshot(neo4j_driver) == graphs[writers]
    assert graphs[2] == graphs[1] and graphs[3] == graphs[1]
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")


def test_post_batches_written_concurrently_report_as_one_stream(neo4j_driver):
    """Posts never share a node, so a bulk call splits their batches over the writers; the report,
    the superseded ids and their order are those of one writer."""
    newer = [dataclasses.replace(_post(f"q{i:02d}"), created_at="2026-11-02T10:00:00+00:00", partition="d2")
             for i in range(20)]
    older = [dataclasses.replace(_post(f"q{i:02d}"), partition="d1") for i in range(20)]
    outcomes = []
    for writers in (1, 2, 3):
        neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        writer = GraphWriter(neo4j_driver, batch_size=3, writers=writers)
        writer.ensure_schema()
        first = writer.upsert_posts(newer)
        again = writer.upsert_posts(older[::-1])  # every older version loses, in the order sent
        outcomes.append((first.rows["post"], first.batches, first.superseded, again.rows["post"], again.batches,
                         again.superseded, graph_snapshot(neo4j_driver)))
    assert outcomes[0][2] == [] and outcomes[0][5] == [p.id for p in older[::-1]]
    assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")


def test_the_loader_and_the_read_queries_work_over_the_routing_scheme(neo4j_server, neo4j_driver):
    """``neo4j://`` is what clusters and Aura use: the driver asks the server for a routing table, writes go to
    the writer, reads marked read-only to a reader. Against the local server (a cluster of one) the same load
    gives the same graph as over ``bolt://``, and the example queries run on the reader it names."""
    from kg_loader.queries import run_examples

    batch = _batch()
    bolt_writer = GraphWriter(neo4j_driver, batch_size=2)
    bolt_writer.ensure_schema()
    _load(bolt_writer, *batch)
    over_bolt = graph_snapshot(neo4j_driver)
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")

    routed = dataclasses.replace(neo4j_server.settings, uri=neo4j_server.settings.uri.replace("bolt://", "neo4j://"))
    with connect(routed) as driver:
        driver.verify_connectivity()
        writer = GraphWriter(driver, batch_size=2)
        writer.ensure_schema()
        report = _load(writer, *batch)
        assert report.nodes_created == 5 and not report.rejected
        answers = run_examples(driver)
        readers = driver.execute_query("CALL dbms.routing.getRoutingTable({}, 'neo4j') YIELD servers "
                                       "RETURN [s IN servers WHERE s.role = 'READ' | s.addresses] AS readers",
                                       routing_="r").records[0]["readers"]
    assert graph_snapshot(neo4j_driver) == over_bolt
    assert readers == [[neo4j_server.settings.uri.removeprefix("bolt://")]]
    assert sum(len(rows) for rows in answers.values()) > 0


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
    after_first = graph_snapshot(neo4j_driver)
    for _ in range(2):
        again = _load(writer, *_batch())
        assert again.nodes_created == 0 and again.relationships_created == 0
        assert graph_snapshot(neo4j_driver) == after_first
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
    queries = (cypher.upsert_mentions("Person"), cypher.upsert_relations("member_of"),
               cypher.upsert_mentions_as_lists("Person"), cypher.upsert_relations_by_element_id("member_of"))
    for query in queries:
        with neo4j_driver.session() as session:
            plan = session.run("EXPLAIN " + query, params).consume().plan
        ops, todo = [], [plan]
        while todo:
            node = todo.pop()
            ops.append(node["operatorType"])
            todo.extend(node.get("children", []))
        # (EagerAggregation is the final count(*) of rows written: it buffers nothing between clauses)
        assert not [op for op in ops if op.split("@")[0] == "Eager"], ops


def test_the_bulk_forms_read_rows_as_lists_in_their_layout():
    """The bulk writer's statements are the readable ones with each ``row.field`` read at its place in the
    list layout; a field missing from the layout is refused, never sent as a wrong index."""
    from kg_loader import cypher

    mentions = cypher.upsert_mentions_as_lists("Person")
    assert "row." not in mentions and "MATCH (p:Post {id: row[0]})" in mentions and "collect(row[1]) AS ids" in mentions
    relations = cypher.upsert_relations_by_element_id("member_of")
    assert "row." not in relations and "elementId(h) = row[0]" in relations and "collect(row[6]) AS done" in relations
    assert cypher.upsert_mentions("Person").replace("row.post_id", "row[0]").count("row[0]") == mentions.count("row[0]")
    with pytest.raises(ValueError, match="not in its list layout"):
        cypher._as_lists("UNWIND $rows AS row RETURN row.nope", cypher.MENTION_ROW)


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


def test_triples_find_their_endpoints_by_element_id_and_stale_ids_fall_back_to_the_key(neo4j_driver):
    """A writer's triples use the element ids its mention MERGEs returned. One that no longer names its
    entity (the node was deleted and its id reused by another entity, or it is gone) writes nothing by
    id: the row goes by key in the same transaction, so the graph and the counters are those of a writer
    that never knew an element id."""
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    writer.upsert_posts([_post("p1"), _post("p2")])
    people = [("Ana", "Person"), ("Rui", "Person"), ("Eva", "Person"), ("Lia", "Person")]
    writer.upsert_mentions([_mention("p1", name, etype, 10 * i) for i, (name, etype) in enumerate(people)])
    ids = [entity_id(*p) for p in people]
    assert set(ids) <= set(writer._entity_nodes)
    fresh = GraphWriter(neo4j_driver)  # knows no element id: every row by key
    eid = writer._entity_nodes
    eid[ids[0]], eid[ids[1]] = eid[ids[1]], eid[ids[0]]  # element ids of other entities
    eid[ids[2]] = "4:00000000-0000-0000-0000-000000000000:999999"  # no such node
    rows = [_relation("p1", people[0], "peer", people[1]), _relation("p1", people[2], "peer", people[3]),
            _relation("p2", people[3], "peer", people[1]), _relation("p2", people[1], "peer", people[0], 0.6)]
    report = writer.upsert_relations(rows)
    assert report.rows["relation"] == 4 and report.relationships_created == 4 and not report.dropped
    assert ids[0] not in eid and ids[2] not in eid  # the stale ones are forgotten
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (h:Entity)-[r:PEER]->(t:Entity) RETURN h.id AS h, t.id AS t, r.post_ids AS posts ORDER BY h, t")
    assert sorted((r["h"], r["t"], tuple(r["posts"])) for r in records) == sorted(
        (row.head_id, row.tail_id, (row.post_id,)) for row in rows)
    again = fresh.upsert_relations(rows)  # by key: matches what was written by id, creates nothing
    assert again.rows["relation"] == 4 and again.relationships_created == 0
    assert (report.properties_set, report.batches) == (4 * 9, 1)  # nine properties each, once; one batch


def test_mentions_find_their_post_by_element_id_and_stale_ids_fall_back_to_the_key(neo4j_driver):
    """A writer's mentions use the element ids its post MERGEs returned. One that no longer names its post
    (another post's node, or no node at all) writes nothing by id: the row goes by key in the same
    transaction, so the graph and the report are those of a writer that never knew an element id; a batch
    with a post the writer does not know goes by key whole, and a missing post is still counted."""
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts = [_post("p1"), _post("p2"), _post("p3")]
    writer.upsert_posts(posts)
    assert set(writer._post_nodes) == {"p1", "p2", "p3"}
    known = writer._post_nodes
    known["p1"] = known["p2"]  # another post's node: the id check fails
    known["p2"] = "4:00000000-0000-0000-0000-000000000000:999999"  # no such node
    first = [_mention("p1", "Ana", "Person", 0), _mention("p2", "Ana", "Person", 5), _mention("p3", "Rui", "Person", 0),
             _mention("p3", "Lisbon", "Location", 9)]
    mixed = [_mention("p3", "Eva", "Person", 20), _mention("p9", "Lia", "Person", 0)]  # p9: not in the graph
    report = writer.upsert_mentions(first).merge(writer.upsert_mentions(mixed))
    assert "p1" not in known and "p2" not in known and "p3" in known  # the stale ones are forgotten
    graph = graph_snapshot(neo4j_driver)

    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
    fresh = GraphWriter(neo4j_driver)
    fresh.upsert_posts(posts)
    fresh._post_nodes.clear()  # knows no element id: every row by key
    expected = fresh.upsert_mentions(first).merge(fresh.upsert_mentions(mixed))
    assert graph_snapshot(neo4j_driver) == graph
    assert report.as_dict() == expected.as_dict()
    assert report.rows["mention"] == 5 and report.dropped == {"mentions_missing_post": 1}
    assert set(writer._entity_nodes) == set(fresh._entity_nodes)  # the entities' element ids, from both statements
    again = writer.upsert_mentions(first)  # p3 by id, p1/p2 by key: matches, creates nothing
    assert again.rows["mention"] == 4 and again.created == 0


# --- what a load really wrote, versions of a post, corrected partitions -------------------------------

from mmkg.records import ImageRef, Mention, Post, RelationMention, TypedMention  # noqa: E402


def _typed(post: Post, *names: tuple[str, str]) -> list[TypedMention]:
    out = []
    for name, etype in names:
        start = post.text.index(name)
        out.append(TypedMention(Mention(post.id, start, start + len(name), name, "test"), etype, 0.8, "m/1", "ls1"))
    return out


def _related(head: TypedMention, relation: str, tail: TypedMention, score: float = 0.7) -> RelationMention:
    return RelationMention(head.mention.post_id, head, tail, relation, score, "m/1", "ls1")


def _image(uri: str, sha: str) -> ImageRef:
    return ImageRef(uri, "ok", sha * 64, f"/landing/{uri}", 8, 8)


def _writer(driver):
    from kg_loader.load import writer_for
    from mmkg.ontology import load_ontology
    from mmkg.settings import REPO_ROOT

    writer = writer_for(driver, load_ontology(REPO_ROOT / "ontology" / "ontology.yaml"))
    writer.ensure_schema()
    return writer


def _load_posts(writer, posts: list[Post], extraction: dict, partition: str, retract: bool = False):
    """``extraction``: post id -> (typed mentions, relations)."""
    from kg_loader.load import load_extraction

    typed = [t for p in posts for t in extraction[p.id][0]]
    relations = [r for p in posts for r in extraction[p.id][1]]
    return load_extraction(writer, posts, typed, relations, "run-1", partition=partition,
                           vanished_range=("", None) if retract else None)


def _graph(driver) -> str:
    from kg_loader.checksum import graph_checksum

    return graph_checksum(driver)


def test_relations_whose_head_or_tail_is_missing_are_not_counted_as_written(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts, mentions, relations = _batch()
    writer.upsert_posts(posts)
    writer.upsert_mentions(mentions)
    ghost = ("Nobody Anywhere", "Person")  # no mention wrote this entity
    rows = relations + [_relation("p1", ghost, "member_of", ("Lisbon Falcons", "Organization")),
                        _relation("p2", ("Porto", "Location"), "located_in", ("Atlantis", "Location"))]
    report = writer.upsert_relations(rows)
    assert report.rows["relation"] == 3 and report.dropped["relations_missing_endpoint"] == 2
    reasons = sorted(r.reason for r in report.rejected)
    assert reasons[0].startswith(f"head entity {entity_id(*ghost)} not in the graph")
    assert reasons[1].startswith(f"tail entity {entity_id('Atlantis', 'Location')} not in the graph")
    count = neo4j_driver.execute_query("MATCH (:Entity)-[r]->(:Entity) RETURN count(r) AS n").records[0]["n"]
    assert count == 2  # MEMBER_OF (two posts' evidence) and LOCATED_IN


def test_evidence_lists_and_aliases_do_not_depend_on_the_order_of_loads(neo4j_driver):
    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    posts, mentions, relations = _batch()
    states = []
    for order in (lambda xs: xs, lambda xs: list(reversed(xs))):
        neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        writer.upsert_posts(posts)
        for m in order(mentions + [_mention("p2", "MARTA SILVA", "Person", 70)]):
            writer.upsert_mentions([m])
        for r in order(relations):
            writer.upsert_relations([r])
        states.append(graph_snapshot(neo4j_driver))
    assert states[0] == states[1]
    r = neo4j_driver.execute_query("MATCH ()-[r:MEMBER_OF]->() RETURN r.post_ids AS ids").records[0]
    assert r["ids"] == ["p1", "p2"]


def test_the_later_created_at_wins_whichever_day_is_loaded_first(neo4j_driver):
    """One post id on two days: the graph keeps the later ``created_at`` (ties: the larger content
    digest), with that version's mentions only, whatever order the days are (back)filled in."""
    early = Post("x1", "Marta Silva of Lisbon Falcons", "2026-11-01T10:00:00+00:00", images=(_image("images/a.png", "a"),))
    late = Post("x1", "Ana Costa of Porto Owls, edited", "2026-11-02T09:00:00+00:00")
    other = Post("y1", "Marta Silva in Porto", "2026-11-01T11:00:00+00:00")
    extraction = {
        id(early): _typed(early, ("Marta Silva", "Person"), ("Lisbon Falcons", "Organization")),
        id(late): _typed(late, ("Ana Costa", "Person"), ("Porto Owls", "Organization")),
        id(other): _typed(other, ("Marta Silva", "Person"), ("Porto", "Location")),
    }
    days = {"2026-11-01": [early, other], "2026-11-02": [late]}
    writer = _writer(neo4j_driver)
    graphs, superseded = [], []
    for order in (["2026-11-01", "2026-11-02"], ["2026-11-02", "2026-11-01"]):
        neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        for day in order:
            posts = days[day]
            typed = [t for p in posts for t in extraction[id(p)]]
            from kg_loader.load import load_extraction

            report = load_extraction(writer, posts, typed, [], "run-1", partition=day)
            superseded.append(report.superseded)
        graphs.append(_graph(neo4j_driver))
    assert graphs[0] == graphs[1]
    assert superseded == [[], [], [], ["x1"]]  # the early version loaded second writes nothing
    post = neo4j_driver.execute_query("MATCH (p:Post {id: 'x1'}) RETURN p").records[0]["p"]
    assert post["text"] == late.text and post["partition"] == "2026-11-02"
    names = neo4j_driver.execute_query(
        "MATCH (:Post {id: 'x1'})-[:MENTIONS]->(e) RETURN collect(e.name) AS n").records[0]["n"]
    assert sorted(names) == ["ana costa", "porto owls"]
    assert neo4j_driver.execute_query("MATCH (i:Image) RETURN count(i) AS n").records[0]["n"] == 0
    assert neo4j_driver.execute_query("MATCH (e:Organization {name: 'lisbon falcons'}) RETURN count(e) AS n").records[0]["n"] == 0

    # a tie on created_at between two days: the larger digest wins, in both orders
    twin = Post("x1", "Kofi Mensah of Accra Lions", late.created_at)
    extraction[id(twin)] = _typed(twin, ("Kofi Mensah", "Person"))
    texts = []
    for pair in (((late, "2026-11-02"), (twin, "2026-11-03")), ((twin, "2026-11-03"), (late, "2026-11-02"))):
        neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        for post, day in pair:
            load_extraction(writer, [post], extraction[id(post)], [], "run-1", partition=day)
        texts.append(neo4j_driver.execute_query("MATCH (p:Post) RETURN p.text AS t").records[0]["t"])
    from kg_loader.records import post_digest

    assert texts[0] == texts[1] == max((late, twin), key=post_digest).text
    # the re-run of a day replaces its own post (a correction), older or not
    fixed = Post("x1", "Ana Costa of Porto Owls, fixed", "2026-11-01T23:00:00+00:00")
    winner_day = "2026-11-02" if max((late, twin), key=post_digest) is late else "2026-11-03"
    load_extraction(writer, [fixed], [], [], "run-1", partition=winner_day)
    assert neo4j_driver.execute_query("MATCH (p:Post) RETURN p.text AS t").records[0]["t"] == fixed.text


def test_a_rerun_of_a_corrected_partition_gives_the_graph_of_the_corrected_data(neo4j_driver):
    """Posts that vanished from the partition go (with the entities and images only they had), a
    post that lost an image loses its link, a corrected text replaces its mentions and aliases;
    posts of another partition stay."""
    a = Post("a", "MARTA SILVA of Lisbon Falcons", "2026-11-01T08:00:00+00:00",
             images=(_image("images/a.png", "1"), _image("images/a2.png", "2")))
    b = Post("b", "Sofia Reyes in Durban", "2026-11-01T09:00:00+00:00")
    c = Post("c", "Marta Silva of Lisbon Falcons", "2026-11-01T10:00:00+00:00", images=(_image("images/c.png", "1"),))
    z = Post("z", "Sofia Reyes of Porto Owls", "2026-11-02T10:00:00+00:00")
    a_fixed = Post("a", "Marta Silva of Lisbon Falcons", a.created_at, images=(_image("images/z.png", "1"),))

    def extraction(*posts):
        out = {}
        for p in posts:
            names = [(n, t) for n, t in (("MARTA SILVA", "Person"), ("Marta Silva", "Person"), ("Lisbon Falcons", "Organization"),
                                         ("Sofia Reyes", "Person"), ("Durban", "Location"), ("Porto Owls", "Organization"))
                     if n in p.text]
            typed = _typed(p, *names)
            people = [t for t in typed if t.entity_type == "Person"]
            places = [t for t in typed if t.entity_type == "Location"]
            clubs = [t for t in typed if t.entity_type == "Organization"]
            rels = [_related(h, "member_of", t) for h in people for t in clubs]
            rels += [_related(h, "place_of_residence", t) for h in people for t in places]
            out[p.id] = (typed, rels)
        return out

    writer = _writer(neo4j_driver)
    _load_posts(writer, [z], extraction(z), "2026-11-02", retract=True)
    _load_posts(writer, [a, b, c], extraction(a, b, c), "2026-11-01", retract=True)
    report = _load_posts(writer, [a_fixed, c], extraction(a_fixed, c), "2026-11-01", retract=True)
    assert report.posts_retracted == 1
    corrected = _graph(neo4j_driver)

    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
    _load_posts(writer, [z], extraction(z), "2026-11-02", retract=True)
    _load_posts(writer, [a_fixed, c], extraction(a_fixed, c), "2026-11-01", retract=True)
    assert _graph(neo4j_driver) == corrected
    image = neo4j_driver.execute_query("MATCH (i:Image) RETURN collect(i.uri) AS uris").records[0]["uris"]
    assert image == ["images/c.png"]  # image 2 went with a's old version; image 1's uri is its posts' smallest
    aliases = neo4j_driver.execute_query("MATCH (e:Person {name: 'marta silva'}) RETURN e.aliases AS a").records[0]["a"]
    assert aliases == ["Marta Silva"]
    assert neo4j_driver.execute_query("MATCH (e:Location) RETURN count(e) AS n").records[0]["n"] == 0

    # a partition that is now empty: its one (empty) shard retracts all of it, the other day stays
    _load_posts(writer, [], {}, "2026-11-01", retract=True)
    ids = neo4j_driver.execute_query("MATCH (p:Post) RETURN collect(p.id) AS ids").records[0]["ids"]
    assert ids == ["z"]


def test_finding_vanished_posts_seeks_the_partition_index(neo4j_driver):
    from kg_loader import cypher

    GraphWriter(neo4j_driver).ensure_schema()
    for query, params in ((cypher.FIND_VANISHED_POSTS, {"lo": ""}), (cypher.FIND_VANISHED_POSTS_BELOW, {"lo": "a", "hi": "b"})):
        with neo4j_driver.session() as session:
            plan = session.run("EXPLAIN " + query, {"partition": "2026-11-01", "keep": [], **params}).consume().plan
        ops, todo = [], [plan]
        while todo:
            node = todo.pop()
            ops.append((node["operatorType"].split("@")[0], node.get("args", {}).get("Details", "")))
            todo.extend(node.get("children", []))
        assert any(op == "NodeIndexSeek" and "partition" in details for op, details in ops), ops


def test_keys_too_long_to_index_are_refused_and_the_rest_loads(neo4j_driver):
    from kg_loader.writer import MAX_INDEX_KEY_BYTES

    writer = GraphWriter(neo4j_driver)
    writer.ensure_schema()
    long_id = "p" * (MAX_INDEX_KEY_BYTES + 1)
    report = writer.upsert_posts([_post("p1"), _post(long_id)])
    assert report.rows["post"] == 1 and "over the 4096-byte limit" in report.rejected[0].reason
    long_name = "é" * (MAX_INDEX_KEY_BYTES // 2 + 1)
    m = writer.upsert_mentions([_mention("p1", "Marta Silva", "Person", 0),
                                MentionRow("p1", entity_id(long_name, "Person"), "Person", long_name, long_name, 20,
                                           20 + len(long_name), 0.9, "test/v1", "ls1", "run-1")])
    assert m.rows["mention"] == 1 and "entity name" in m.rejected[0].reason


def test_a_narrower_type_carries_the_labels_of_the_types_it_narrows(neo4j_driver):
    from kg_loader.load import writer_for
    from mmkg.ontology import Ontology

    onto = Ontology.from_dict({"entity_types": [
        {"name": "Person", "description": "a person"},
        {"name": "Organization", "description": "an organization"},
        {"name": "SportsTeam", "description": "a sports team", "parent": "Organization"},
        {"name": "BasketballTeam", "description": "a basketball team", "parent": "SportsTeam"}]})
    writer = writer_for(neo4j_driver, onto)
    writer.ensure_schema()
    _load(writer, [_post("p1")], [_mention("p1", "Seoul Tigers", "BasketballTeam", 0),
                                  _mention("p1", "Corvid Labs", "Organization", 20)], [])
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (e:Entity) RETURN e.name AS name, e.type AS type, labels(e) AS labels ORDER BY name")
    got = {r["name"]: (r["type"], sorted(r["labels"])) for r in records}
    assert got == {"corvid labs": ("Organization", ["Entity", "Organization"]),
                   "seoul tigers": ("BasketballTeam", ["BasketballTeam", "Entity", "Organization", "SportsTeam"])}
    records, _, _ = neo4j_driver.execute_query("MATCH (e:Organization) RETURN count(e) AS n")
    assert records[0]["n"] == 2  # asking for organizations finds the team too
