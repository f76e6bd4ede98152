"""Type agreement across runs (``kg_loader.type_agreement``): a name two days typed differently is one entity
of its best-supported type, whatever order the days are loaded in; a run's own homonym and a person's
decision keep a name split."""

from __future__ import annotations

import pytest

from kg_loader import resolution as res
from kg_loader.checksum import duplicates, graph_checksum
from kg_loader.type_agreement import Evidence, agreed_type
from kg_loader.writer import GraphWriter, LoadReport
from mmkg.identity import entity_id
from mmkg.records import Mention, Post, RelationMention, TypedMention

LS = "ls-test"
RUN_IDS = ("run_id", "first_run_id")  # two runs stamp their own ids: left out where loading orders are compared

DAYS = {
    "day-1": {"p1": "Seoul Tigers play in Seoul tonight", "p2": "Seoul Tigers fans everywhere"},
    "day-2": {"p3": "Seoul Tigers won again in Seoul"},
    "day-3": {"p4": "Seoul Tigers stadium tour", "p5": "Seoul Tigers museum", "p6": "Seoul Tigers square"},
}
TIGERS_ORG, TIGERS_LOC = entity_id("seoul tigers", "Organization"), entity_id("seoul tigers", "Location")


def test_the_agreed_type_is_a_function_of_the_evidence_and_a_run_homonym_keeps_a_name_split():
    org = Evidence("a", "Organization", (("Organization", 0.8, "d1"), ("Organization", 0.7, "d1")))
    loc = Evidence("b", "Location", (("Location", 0.95, "d2"),))
    assert agreed_type([org, loc]) == agreed_type([loc, org]) == "Organization"  # more mentions
    two = Evidence("c", "Location", (("Location", 0.9, "d2"), ("Location", 0.7, "d3")))
    assert agreed_type([org, two]) == "Location"  # equal mentions: the higher mean score (0.8 vs 0.75)
    tie = Evidence("c", "Location", (("Location", 0.9, "d2"), ("Location", 0.6, "d3")))
    assert agreed_type([org, tie]) == "Location"  # equal mean scores too: the smaller name
    assert agreed_type([Evidence("a", "Organization", (("Organization", 0.5, "d1"),)), loc]) == "Location"
    # moved mentions keep the type their run gave them: the node a mention sits on does not count
    moved = Evidence("a", "Organization", (("Organization", 0.8, "d1"), ("Location", 0.9, "d2")))
    assert agreed_type([moved, Evidence("b", "Location", (("Location", 0.9, "d3"),))]) == "Location"
    # one run gave the name two types itself (its agreement saw a homonym): left split
    homonym = Evidence("b", "Location", (("Location", 0.9, "d1"),))
    assert agreed_type([org, homonym]) is None


def _day(day: str, tigers_type: str, score: float) -> tuple[list[Post], list[TypedMention], list[RelationMention]]:
    posts, typed, relations = [], [], []
    for pid, text in DAYS[day].items():
        posts.append(Post(pid, text, "2026-11-01T10:00:00+00:00", "author", "en", "test"))
        tigers = TypedMention(Mention(pid, 0, 12, "Seoul Tigers", "test"), tigers_type, score, "test/v1", LS)
        typed.append(tigers)
        if text.endswith("in Seoul") or "in Seoul " in text:
            start = text.rindex("Seoul")
            seoul = TypedMention(Mention(pid, start, start + 5, "Seoul", "test"), "Location", 0.9, "test/v1", LS)
            typed.append(seoul)
            relations.append(RelationMention(pid, tigers, seoul, "located_in", 0.6, "test/v1", LS))
    return posts, typed, relations


def _writer(driver):
    from kg_loader.load import writer_for
    from mmkg.ontology import load_ontology
    from mmkg.settings import PipelineSettings

    writer = writer_for(driver, load_ontology(PipelineSettings.from_env().ontology_path))
    writer.ensure_schema()
    return writer


def _load(writer, day: str, tigers_type: str, score: float = 0.8):
    from kg_loader.load import load_extraction

    report = load_extraction(writer, *_day(day, tigers_type, score), run_id=day)
    assert not report.rejected
    return report


def _entities(driver, name: str = "seoul tigers") -> list[dict]:
    return [r.data() for r in driver.execute_query(
        "MATCH (e:Entity {name: $name}) RETURN e.id AS id, e.type AS type, labels(e) AS labels, "
        "coalesce(e.merged_ids, []) AS merged_ids, COUNT { (e)<-[:MENTIONS]-() } AS mentions ORDER BY id",
        name=name).records]  # fmt: skip


@pytest.mark.neo4j
def test_two_days_typing_one_name_differently_leave_one_entity_of_the_better_supported_type(neo4j_driver):
    writer = _writer(neo4j_driver)
    first = _load(writer, "day-1", "Organization")
    assert first.entities_type_agreed == 0
    second = _load(writer, "day-2", "Location", 0.6)  # one mistyped mention the next day
    assert second.entities_type_agreed == 1 and second.as_dict()["entities_type_agreed"] == 1
    [tigers] = _entities(neo4j_driver)
    assert (tigers["id"], tigers["type"], tigers["mentions"]) == (TIGERS_ORG, "Organization", 3)
    assert "Location" not in tigers["labels"] and tigers["merged_ids"] == [TIGERS_LOC]
    types = neo4j_driver.execute_query(
        "MATCH (p:Post)-[m:MENTIONS]->(:Entity {id: $id}) RETURN p.id AS p, m.type AS t ORDER BY p", id=TIGERS_ORG)
    assert [(r["p"], r["t"]) for r in types.records] == [("p1", "Organization"), ("p2", "Organization"),
                                                          ("p3", "Location")]  # what each run said stays
    triple = neo4j_driver.execute_query(
        "MATCH (:Entity {id: $id})-[r:LOCATED_IN]->(:Entity {name: 'seoul'}) RETURN r.post_ids AS posts",
        id=TIGERS_ORG).records  # fmt: skip
    assert [r["posts"] for r in triple] == [["p1", "p3"]]  # evidence of both days on one triple
    assert duplicates(neo4j_driver) == {"nodes": 0, "relationships": 0}
    in_order = graph_checksum(neo4j_driver, ignore=RUN_IDS)

    # re-running either day changes nothing
    assert _load(writer, "day-2", "Location", 0.6).entities_type_agreed == 1  # its entity written anew, folded again
    _load(writer, "day-1", "Organization")
    assert graph_checksum(neo4j_driver, ignore=RUN_IDS) == in_order

    # the other order gives the same graph
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
    _load(writer, "day-2", "Location", 0.6)
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Location"]
    _load(writer, "day-1", "Organization")
    assert graph_checksum(neo4j_driver, ignore=RUN_IDS) == in_order


@pytest.mark.neo4j
def test_new_evidence_moves_a_name_to_the_other_type_and_a_created_entity_gets_its_labels(neo4j_driver):
    writer = _writer(neo4j_driver)
    _load(writer, "day-1", "Organization")
    _load(writer, "day-2", "Location", 0.6)
    _load(writer, "day-3", "Location", 0.7)  # three more mentions as a place: 4 against 2
    [tigers] = _entities(neo4j_driver)
    assert (tigers["id"], tigers["type"], tigers["mentions"]) == (TIGERS_LOC, "Location", 6)
    assert "Organization" not in tigers["labels"] and TIGERS_ORG in tigers["merged_ids"]
    three_days = graph_checksum(neo4j_driver, ignore=RUN_IDS)
    assert tigers["merged_ids"] == [TIGERS_ORG]  # never its own id, though it was folded away once
    # day 3 re-run as an Organization: the evidence swings back; the Organization entity is created again
    _load(writer, "day-3", "Organization", 0.7)
    [tigers] = _entities(neo4j_driver)
    assert (tigers["id"], tigers["type"], tigers["mentions"]) == (TIGERS_ORG, "Organization", 6)
    assert {"Entity", "Organization"} <= set(tigers["labels"])
    _load(writer, "day-3", "Location", 0.7)
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Location"]
    # the same three days loaded in another order, from an empty graph
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
    for day, etype, score in (("day-3", "Location", 0.7), ("day-1", "Organization", 0.8), ("day-2", "Location", 0.6)):
        _load(writer, day, etype, score)
    assert graph_checksum(neo4j_driver, ignore=RUN_IDS) == three_days


@pytest.mark.neo4j
def test_a_run_homonym_and_a_person_decision_keep_a_name_split(neo4j_driver):
    from kg_loader.load import load_extraction

    writer = _writer(neo4j_driver)
    posts, typed, relations = _day("day-1", "Organization", 0.8)
    # the run itself typed the name two ways (its agreement kept a homonym): left as two entities
    typed = [TypedMention(tm.mention, "Location", 0.9, tm.model_version, tm.label_set_id)
             if tm.mention.post_id == "p2" else tm for tm in typed]  # fmt: skip
    report = load_extraction(writer, posts, typed, relations, run_id="day-1")
    assert report.entities_type_agreed == 0 and report.names_left_split == {"homonym_in_run": 1}
    assert [e["type"] for e in _entities(neo4j_driver)] == sorted(["Organization", "Location"],
                                                                  key=lambda t: entity_id("seoul tigers", t))
    # a person rejected the pair: the rule never overrides that
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
    res.ensure_schema(neo4j_driver)
    _load(writer, "day-2", "Location", 0.6)
    neo4j_driver.execute_query(
        "CREATE (:Entity:Organization {id: $id, name: 'seoul tigers', type: 'Organization', aliases: []})",
        id=TIGERS_ORG)  # fmt: skip
    res.reject(neo4j_driver, TIGERS_ORG, TIGERS_LOC, note="the club and a district")
    report = _load(writer, "day-1", "Organization")
    assert report.entities_type_agreed == 0 and report.names_left_split == {"decided_by_person": 1}
    assert len(_entities(neo4j_driver)) == 2


@pytest.mark.neo4j
def test_agree_types_command_folds_a_graph_loaded_before_the_step_existed(neo4j_driver, capsys):
    """MENTIONS written without ``m.type`` count as their entity's type; `mmkg entities agree-types` covers
    every name of the graph."""
    from app.cli import main

    neo4j_driver.execute_query("""
        CREATE (p1:Post {id: 'p1', text: 'x'}), (p2:Post {id: 'p2', text: 'x'}), (p3:Post {id: 'p3', text: 'x'})
        CREATE (o:Entity:Organization {id: $org, name: 'seoul tigers', type: 'Organization', aliases: ['Seoul Tigers']})
        CREATE (l:Entity:Location {id: $loc, name: 'seoul tigers', type: 'Location', aliases: ['seoul tigers']})
        CREATE (p1)-[:MENTIONS {start: 0, end: 12, score: 0.8, run_id: 'd1'}]->(o)
        CREATE (p2)-[:MENTIONS {start: 0, end: 12, score: 0.7, run_id: 'd1'}]->(o)
        CREATE (p3)-[:MENTIONS {start: 0, end: 12, score: 0.9, run_id: 'd2'}]->(l)
        """, org=TIGERS_ORG, loc=TIGERS_LOC)  # fmt: skip
    assert main(["entities", "agree-types"]) == 0
    out = capsys.readouterr().out
    assert '"entities_folded": 1' in out and '"mentions_moved": 1' in out
    [tigers] = _entities(neo4j_driver)
    assert (tigers["id"], tigers["mentions"], tigers["merged_ids"]) == (TIGERS_ORG, 3, [TIGERS_LOC])
    aliases = neo4j_driver.execute_query("MATCH (e:Entity) RETURN e.aliases AS a").records[0]["a"]
    assert aliases == ["Seoul Tigers", "seoul tigers"]
    assert main(["entities", "agree-types"]) == 0 and '"entities_folded": 0' in capsys.readouterr().out


@pytest.mark.neo4j
def test_agree_all_types_decides_a_graph_in_batches_of_names(neo4j_driver):
    """Three split names, two names per transaction: each name decided whole, the counts summed."""
    from kg_loader import type_agreement as ta

    for i, name in enumerate(("alpha", "beta", "gamma")):
        neo4j_driver.execute_query("""
            CREATE (p1:Post {id: $p + '1', text: 'x'}), (p2:Post {id: $p + '2', text: 'x'}), (p3:Post {id: $p + '3', text: 'x'})
            CREATE (o:Entity:Organization {id: $org, name: $name, type: 'Organization', aliases: [$name]})
            CREATE (l:Entity:Location {id: $loc, name: $name, type: 'Location', aliases: [$name]})
            CREATE (p1)-[:MENTIONS {start: 0, end: 1, score: 0.8, run_id: 'd1', type: 'Organization'}]->(o)
            CREATE (p2)-[:MENTIONS {start: 0, end: 1, score: 0.7, run_id: 'd1', type: 'Organization'}]->(o)
            CREATE (p3)-[:MENTIONS {start: 0, end: 1, score: 0.9, run_id: 'd2', type: 'Location'}]->(l)
            """, p=f"p{i}-", name=name, org=entity_id(name, "Organization"), loc=entity_id(name, "Location"))  # fmt: skip
    report = ta.agree_all_types(neo4j_driver, batch=2)
    assert (report.entities_folded, report.mentions_moved) == (3, 3)
    for name in ("alpha", "beta", "gamma"):
        assert [e["type"] for e in _entities(neo4j_driver, name)] == ["Organization"]


@pytest.mark.neo4j
def test_two_days_loaded_at_once_still_leave_one_entity(neo4j_driver):
    """Intervals of a backfill load at the same time: each load's agreement must see the other's entity, not
    read before the other commits (``type_agreement`` locks each name it decides until its load commits)."""
    from concurrent.futures import ThreadPoolExecutor

    writer = _writer(neo4j_driver)
    days = [("day-1", "Organization"), ("day-3", "Location", 0.7)]  # no entity in common but the tigers
    for args in days:
        _load(writer, *args)
    sequential = graph_checksum(neo4j_driver, ignore=RUN_IDS)
    for _ in range(8):
        neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda args: _load(writer, *args), days))
        assert [e["type"] for e in _entities(neo4j_driver)] == ["Location"]
        assert graph_checksum(neo4j_driver, ignore=RUN_IDS) == sequential


@pytest.mark.neo4j
def test_posts_a_rerun_no_longer_has_count_out_of_the_agreement(neo4j_driver):
    from kg_loader.load import load_extraction

    writer = _writer(neo4j_driver)

    def load(day, etype, score, keep=None):
        posts, typed, relations = _day(day, etype, score)
        if keep is not None:
            posts = [p for p in posts if p.id in keep]
            typed = [t for t in typed if t.mention.post_id in keep]
        report = load_extraction(writer, posts, typed, relations, run_id=day, partition=day, vanished_range=("", None))
        assert not report.rejected
        return report

    load("day-1", "Organization", 0.8)
    load("day-3", "Location", 0.7)
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Location"]  # 3 mentions against 2
    report = load("day-3", "Location", 0.7, keep={"p4"})  # the corrected day holds one of its three posts
    assert report.posts_retracted == 2 and report.entities_type_agreed == 1
    [tigers] = _entities(neo4j_driver)
    assert (tigers["type"], tigers["mentions"]) == ("Organization", 3)


@pytest.mark.neo4j
def test_a_type_a_person_sets_holds_through_reloads_until_cleared(neo4j_driver, capsys):
    from app.cli import main
    from kg_loader import type_agreement as ta
    from kg_loader.resolution import ResolutionError

    writer = _writer(neo4j_driver)
    _load(writer, "day-1", "Organization")
    _load(writer, "day-2", "Location", 0.6)
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Organization"]  # 2 mentions against 1
    label_set = {"broader": writer.broader_types, "symmetric": writer.symmetric_relations,
                 "allowed_types": writer.allowed_entity_types}  # fmt: skip
    with pytest.raises(ResolutionError, match="not an entity type of the label set"):
        ta.set_type(neo4j_driver, "seoul tigers", "Stadium", **label_set)
    decision, report = ta.set_type(neo4j_driver, "seoul tigers", "Location", note="the district", **label_set)
    assert (report.entities_folded, report.entities_created) == (1, 1)
    [tigers] = _entities(neo4j_driver)
    assert (tigers["id"], tigers["type"], tigers["mentions"]) == (TIGERS_LOC, "Location", 3)
    # every later load follows the person, whatever its run says
    assert _load(writer, "day-1", "Organization").entities_type_agreed == 1
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Location"]
    assert ta.read_type_decisions(neo4j_driver) == [decision]
    # cleared: the evidence decides again
    assert ta.clear_type(neo4j_driver, "seoul tigers", **label_set).entities_folded == 1
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Organization"]
    with pytest.raises(ResolutionError, match="no type decision"):
        ta.clear_type(neo4j_driver, "seoul tigers", **label_set)
    # the same through the command line, by a name several entities could share or by Type:name
    assert main(["entities", "set-type", "Seoul Tigers", "Location", "--note", "the district"]) == 0
    assert "is typed Location" in capsys.readouterr().out
    assert main(["entities", "decisions"]) == 0 and "seoul tigers is typed Location" in capsys.readouterr().out
    assert main(["entities", "set-type", "Location:seoul tigers", "Nowhere"]) == 2
    assert "not an entity type of the label set" in capsys.readouterr().err
    assert main(["entities", "clear-type", "Location:seoul tigers"]) == 0
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Organization"]
    # a name no entity holds (the runs abstained on it): its decision waits for the next run; a Type:name does not
    assert main(["entities", "set-type", "Corvid Labs", "Organization"]) == 0
    assert "no entity is named 'corvid labs': the decision types its mentions from the next run" in capsys.readouterr().out
    assert ta.read_type_decisions(neo4j_driver)[-1].type == "Organization"
    assert main(["entities", "set-type", "Organization:corvid labs", "Organization"]) == 2
    assert main(["entities", "keep-apart", "corvid labs"]) == 2  # only a type can be set on a name not in the graph
    assert main(["entities", "clear-type", "corvid labs"]) == 0  # and cleared again (a typo stays undoable)
    assert [d.name for d in ta.read_type_decisions(neo4j_driver)] == []
    assert main(["entities", "clear-type", "corvid labs"]) == 2 and "no type decision" in capsys.readouterr().err


@pytest.mark.neo4j
def test_a_homonym_kept_apart_is_split_back_and_never_folded_again(neo4j_driver, capsys):
    from app.cli import main
    from kg_loader import type_agreement as ta

    writer = _writer(neo4j_driver)
    for agree in (False, True):  # the graph the two days leave without the fold, then with it
        neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        original = GraphWriter.agree_entity_types
        if not agree:
            GraphWriter.agree_entity_types = lambda self, names: LoadReport()
        try:
            _load(writer, "day-1", "Organization")
            _load(writer, "day-2", "Location", 0.6)
        finally:
            GraphWriter.agree_entity_types = original
        if not agree:
            unfolded = graph_checksum(neo4j_driver, ignore=RUN_IDS)
            assert len(_entities(neo4j_driver)) == 2
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Organization"]
    label_set = {"broader": writer.broader_types, "symmetric": writer.symmetric_relations,
                 "allowed_types": writer.allowed_entity_types}  # fmt: skip
    decision, counts = ta.keep_apart(neo4j_driver, "seoul tigers", note="club and district", **label_set)
    assert decision.type is None and counts == {"entities_created": 1, "mentions_moved": 1, "evidence_moved": 1}
    ta.read_type_decisions(neo4j_driver)  # the decision is there; the graph is the unfolded one (but for it)
    neo4j_driver.execute_query("MATCH (d:TypeDecision) DETACH DELETE d")
    assert graph_checksum(neo4j_driver, ignore=RUN_IDS) == unfolded
    ta.keep_apart(neo4j_driver, "seoul tigers", **label_set)  # again: nothing left to split
    report = _load(writer, "day-2", "Location", 0.6)  # a re-run folds nothing now
    assert report.entities_type_agreed == 0 and report.names_left_split == {"decided_by_person": 1}
    assert sorted(e["type"] for e in _entities(neo4j_driver)) == ["Location", "Organization"]
    triples = neo4j_driver.execute_query(
        "MATCH (h:Entity {name: 'seoul tigers'})-[r:LOCATED_IN]->() RETURN h.type AS type, r.post_ids AS posts "
        "ORDER BY type").records  # fmt: skip
    assert [(r["type"], r["posts"]) for r in triples] == [("Location", ["p3"]), ("Organization", ["p1"])]
    assert main(["entities", "decisions"]) == 0 and "seoul tigers is a homonym" in capsys.readouterr().out
    assert main(["entities", "clear-type", "seoul tigers"]) == 0  # the evidence decides again: folded
    assert [e["type"] for e in _entities(neo4j_driver)] == ["Organization"]
    assert main(["entities", "keep-apart", "seoul tigers"]) == 0 and '"mentions_moved": 1' in capsys.readouterr().out
    assert len(_entities(neo4j_driver)) == 2
