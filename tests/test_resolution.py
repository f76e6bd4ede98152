"""Entity resolution (kg_loader.resolution): candidates, review decisions, idempotent merges.

The graph tests load posts through the loader's own ``load_extraction`` (ids from ``mmkg.identity``,
retraction on re-load), against the session's real Neo4j 5.26.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kg_loader import resolution as res
from kg_loader.checksum import duplicates, graph_checksum
from kg_loader.resolution import Context, EntityInfo
from mmkg.identity import entity_id
from mmkg.records import Mention, Post, RelationMention, TypedMention
from tests.conftest import graph_snapshot

LS = "ls-test"


# --------------------------------------------------------------------------- names and scores (no graph)
def _e(eid: str, name: str, etype: str = "Person", tag: bool = False) -> EntityInfo:
    return EntityInfo(eid, name, etype, (), 1, tag)


@pytest.mark.parametrize(
    ("a", "b", "signal"),
    [
        (_e("1", "aurora fest", "Event"), _e("2", "aurora festival", "Event"), "token_prefix"),
        (_e("1", "aurorafest", "Event", True), _e("2", "aurora fest", "Event"), "same_name"),
        (_e("1", "martasilva9", tag=True), _e("2", "marta silva"), "tag_contains_name"),
        (_e("1", "martasilva9", "Organization", True), _e("2", "marta silva"), "tag_contains_name"),  # across types
        (_e("1", "kmensah", tag=True), _e("2", "kofi mensah"), "handle_initials"),
        (_e("1", "kofi_runs", tag=True), _e("2", "kofi mensah"), "tag_shares_token"),
        (_e("1", "rrfc", "Organization", True), _e("2", "riverside rovers", "Organization"), "acronym"),
        (_e("1", "northwind recrods", "Organization"), _e("2", "northwind records", "Organization"), "edit_similarity"),
        (_e("1", "marta", "Person"), _e("2", "marta silva", "Person"), "token_containment"),
    ],
)
def test_name_signals_fire_and_the_pair_is_blocked_together(a, b, signal):
    sim, signals = res.name_evidence(a, b)
    assert signal in signals and sim == max(signals.values()) > 0
    assert (a.id, b.id) in res.blocked_pairs([a, b])


def test_names_that_differ_only_by_numbers_or_share_nothing_do_not_match():
    assert res.name_evidence(_e("1", "iphone 14", "Product"), _e("2", "iphone 15", "Product")) == (0.0, {})
    assert res.name_evidence(_e("1", "marta silva"), _e("2", "ana costa")) == (0.0, {})


def test_weak_name_evidence_needs_context_and_types_need_an_equal_name():
    handle, name = _e("a", "kofi_runs", tag=True), _e("b", "kofi mensah")
    assert res.score_pair(handle, name, Context(), Context()) is None  # a shared word alone: not proposed
    together = Context(frozenset({"p1"}))
    c = res.score_pair(handle, name, together, together)
    assert c is not None and c.score == pytest.approx(0.75 * 0.6 + 0.25 * 1.0)
    assert c.reasons == ("tag_shares_token", "co_mentioned", "same_type") and c.shared_posts == 1
    # two types: a similar name and a shared post are not enough; an equal normalised name is, and is marked
    place, team = _e("c", "riverside", "Location"), _e("d", "riverside rovers", "Organization")
    assert res.score_pair(place, team, together, together) is None
    # a handle that spells a full name, typed differently, posted beside it: proposed across types, with its evidence
    handle_org, person = _e("h1", "martasilva9", "Organization", True), _e("p1", "marta silva", "Person")
    assert res.score_pair(handle_org, person, Context(), Context()) is None  # not named together: no evidence
    spelled = res.score_pair(handle_org, person, together, together)
    assert spelled is not None and spelled.cross_type and "tag_contains_name" in spelled.reasons
    assert res.score_pair(_e("h2", "kofi_runs", "Organization", True), _e("p2", "kofi mensah"), together, together) is None
    product, event = _e("e", "coastline games", "Product"), _e("f", "coastlinegames", "Event", True)
    cross = res.score_pair(product, event, Context(), Context())
    assert cross is not None and cross.cross_type and "cross_type" in cross.reasons and "same_name" in cross.reasons
    assert fest_pair_has_no_type_evidence(res.score_pair(_e("g", "aurora fest", "Event"),
                                                         _e("h", "aurorafest", "Event", True), Context(), Context()))


def fest_pair_has_no_type_evidence(c) -> bool:
    return c is not None and not c.cross_type and c.type_evidence == () and "type_evidence" not in c.edge_properties()


def test_a_name_typed_two_ways_by_two_runs_is_a_cross_type_candidate_with_its_type_evidence():
    """Two entities of one name and two types (a graph loaded before the load folded them, a homonym a run saw,
    or names equal only once compacted): the candidate says which type holds more evidence."""
    place = EntityInfo("a1", "seoul tigers", "Location", (), 1, False, 0.41)
    team = EntityInfo("b2", "seoul tigers", "Organization", (), 3, True, 0.38)
    c = res.score_pair(place, team, Context(), Context())
    assert c is not None and c.cross_type and c.suggested_type == "Organization"
    assert c.type_evidence == ("Location: 1 mention, mean score 0.410", "Organization: 3 mentions, mean score 0.380")
    props = c.edge_properties()
    assert props["suggested_type"] == "Organization" and props["type_evidence"] == list(c.type_evidence)
    # equal mentions: the higher mean score
    assert res.score_pair(EntityInfo("a1", "byteconf", "Event", (), 2, False, 0.5),
                          EntityInfo("b2", "byteconf", "Product", (), 2, False, 0.4),
                          Context(), Context()).suggested_type == "Event"


def test_candidates_are_deterministic_and_canonically_ordered():
    ents = [_e("b" * 32, "aurora festival", "Event"), _e("a" * 32, "aurora fest", "Event"),
            _e("c" * 32, "aurorafest", "Event", True)]  # fmt: skip
    first = res.find_candidates(ents, {})
    assert first == res.find_candidates(list(reversed(ents)), {})
    assert all(c.a_id < c.b_id for c in first) and len({c.pair_id for c in first}) == len(first)
    assert [c.score for c in first] == sorted((c.score for c in first), reverse=True)
    assert res.find_candidates(ents, {}, excluded=[first[0].pair_id]) == first[1:]


def test_combined_evidence_is_per_post_with_the_best_score_in_post_order():
    target = {"relation": "located_in", "post_ids": ["p3", "p1"], "scores": [0.5, 0.7], "evidence_count": 2,
              "max_score": 0.7, "run_id": "r1", "first_run_id": "r0"}
    source = {"relation": "located_in", "post_ids": ["p1", "p2"], "scores": [0.9, 0.4], "evidence_count": 2,
              "max_score": 0.9, "run_id": "r2", "first_run_id": "r2"}
    out = res.combine_evidence(target, [source])
    assert out["post_ids"] == ["p1", "p2", "p3"] and out["scores"] == [0.9, 0.4, 0.5]
    assert out["evidence_count"] == 3 and out["max_score"] == 0.9
    assert (out["run_id"], out["first_run_id"]) == ("r1", "r0")  # the canonical triple's
    assert res.combine_evidence(None, [source])["post_ids"] == ["p1", "p2"]


# --------------------------------------------------------------------------- on a real graph
POSTS = {
    "p1": "Lineup for the Aurora Festival in Bergen just dropped #AuroraFest",
    "p2": "See you at aurora fest in Bergen",
    "p3": "Priya Nair was loud at #aurorafest",
    "p4": "Kofi Mensah wins the 200m in Durban with Tom Adeyemi @kofi_runs",
    "p5": "Riverside Rovers play in Riverside tonight",
    "p6": "Tom Adeyemi and Kofi Mensah again",
    "p7": "Coastline Games tickets are out",
    "p8": "coastline games in Durban",
    "p9": "Ana Costa trains with @kofi_runs",
    "p10": "Ana Costa and Kofi Mensah on the track",
}


def _typed(pid: str, surface: str, etype: str, score: float = 0.9, occurrence: int = 0) -> TypedMention:
    text = POSTS[pid]
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(surface, start + 1)
    return TypedMention(Mention(pid, start, start + len(surface), surface, "test"), etype, score, "test/v1", LS)


def _extraction():
    m = {
        "festival": _typed("p1", "Aurora Festival", "Event"), "bergen1": _typed("p1", "Bergen", "Location"),
        "tag": _typed("p1", "AuroraFest", "Event", 0.8),  # the span without '#', as detectors give it
        "fest": _typed("p2", "aurora fest", "Event"), "bergen2": _typed("p2", "Bergen", "Location"),
        "priya": _typed("p3", "Priya Nair", "Person"), "lower": _typed("p3", "aurorafest", "Event", 0.7),
        "kofi": _typed("p4", "Kofi Mensah", "Person"), "durban": _typed("p4", "Durban", "Location"),
        "tom4": _typed("p4", "Tom Adeyemi", "Person"), "handle": _typed("p4", "kofi_runs", "Person", 0.8),
        "rovers": _typed("p5", "Riverside Rovers", "Organization"),
        "riverside": _typed("p5", "Riverside", "Location", occurrence=1),
        "tom6": _typed("p6", "Tom Adeyemi", "Person"), "kofi6": _typed("p6", "Kofi Mensah", "Person"),
        "games7": _typed("p7", "Coastline Games", "Event"), "games8": _typed("p8", "coastline games", "Product"),
        "durban8": _typed("p8", "Durban", "Location"),
        "ana9": _typed("p9", "Ana Costa", "Person"), "handle9": _typed("p9", "kofi_runs", "Person", 0.7),
        "ana10": _typed("p10", "Ana Costa", "Person"), "kofi10": _typed("p10", "Kofi Mensah", "Person"),
    }  # fmt: skip

    def rel(pid, head, relation, tail, score):
        return RelationMention(pid, m[head], m[tail], relation, score, "test/v1", LS)

    relations = [
        rel("p1", "festival", "located_in", "bergen1", 0.8),
        rel("p1", "tag", "located_in", "bergen1", 0.7),
        rel("p2", "fest", "located_in", "bergen2", 0.9),
        rel("p3", "priya", "present_in", "lower", 0.6),
        rel("p3", "priya", "present_in", "lower", 0.6),
        rel("p4", "kofi", "place_of_residence", "durban", 0.5),
        rel("p4", "handle", "peer", "tom4", 0.6),  # symmetric: canonical order by id
        rel("p6", "tom6", "peer", "kofi6", 0.8),
        rel("p5", "rovers", "located_in", "riverside", 0.7),
        rel("p8", "games8", "located_in", "durban8", 0.6),
        rel("p9", "handle9", "peer", "ana9", 0.5),
        rel("p10", "kofi10", "peer", "ana10", 0.4),
    ]
    posts = [Post(pid, text, "2026-11-01T10:00:00+00:00", "author", "en", "test") for pid, text in POSTS.items()]
    return posts, list(m.values()), relations


def _load(driver):
    """The fixture loaded under the shipped label set plus ``place_of_residence`` (which the default label set no
    longer has: README, *The label set*), so Kofi keeps a place beside his people."""
    import yaml

    from kg_loader.load import load_extraction, writer_for
    from mmkg.ontology import Ontology
    from mmkg.settings import PipelineSettings

    spec = yaml.safe_load(Path(PipelineSettings.from_env().ontology_path).read_text(encoding="utf-8"))
    spec["relation_types"].append({"name": "place_of_residence", "description": "the person lives in the location",
                                   "allowed": [["Person", "Location"]]})
    writer = writer_for(driver, Ontology.from_dict(spec))
    writer.ensure_schema()
    report = load_extraction(writer, *_extraction(), run_id="run-1")
    assert not report.rejected
    return writer


def _candidate_names(driver, status="proposed") -> set[tuple[str, str]]:
    return {tuple(sorted((f"{r['a_type']}:{r['a_name']}", f"{r['b_type']}:{r['b_name']}")))
            for r in res.list_candidates(driver, status=status)}  # fmt: skip


FEST, FESTIVAL, LOWER = (entity_id(n, "Event") for n in ("aurora fest", "aurora festival", "aurorafest"))
KOFI, HANDLE, TOM, ANA = (entity_id(n, "Person") for n in ("kofi mensah", "kofi_runs", "tom adeyemi", "ana costa"))
assert HANDLE < ANA < KOFI  # the symmetric test needs a peer whose id lies between the two merged ones


@pytest.mark.neo4j
def test_proposals_on_a_loaded_graph(neo4j_driver):
    _load(neo4j_driver)
    report = res.propose_candidates(neo4j_driver)
    assert _candidate_names(neo4j_driver) == {
        ("Event:aurora fest", "Event:aurora festival"),  # token prefix, co-mentioned in p1, both in Bergen
        ("Event:aurora fest", "Event:aurorafest"),  # a lowercase hashtag: equal without the space
        ("Person:kofi mensah", "Person:kofi_runs"),  # a handle holding the first name, in the same post
        ("Event:coastline games", "Product:coastline games"),  # two types, equal names: marked cross_type
    }  # and never Location:riverside ~ Organization:riverside rovers (similar, co-mentioned, two types)
    assert report.auto_accepted == [] and res.read_decisions(neo4j_driver) == []  # nothing merged silently
    by_pair = {c.pair_id: c for c in report.candidates}
    fest = by_pair[res.pair_id(FEST, FESTIVAL)]
    assert fest.reasons == ("token_prefix", "co_mentioned", "shared_neighbours", "same_type")
    assert fest.shared_post_sample == ("p1",) and fest.shared_neighbours == 1
    edges, _, _ = neo4j_driver.execute_query(
        "MATCH (a:Entity)-[c:SAME_AS_CANDIDATE]->(b:Entity) RETURN a.id < b.id AS ordered, c.status AS status, "
        "c.cross_type AS cross, c.score AS score, c.suggested_type AS suggested, c.type_evidence AS evidence")
    assert len(edges) == 4 and all(r["ordered"] and r["status"] == "proposed" for r in edges)
    assert sorted(r["cross"] for r in edges) == [False, False, False, True]
    cross = next(r for r in edges if r["cross"])  # each side's mentions and mean score, read from the graph
    assert cross["suggested"] in ("Event", "Product") and len(cross["evidence"]) == 2
    assert all("mean score 0." in line or "mean score 1." in line for line in cross["evidence"]), cross
    from kg_loader.queries import run_examples  # the example query lists relation triples, not proposals

    triples = run_examples(neo4j_driver)["Relation triples with the most evidence (posts that support them)"]
    assert triples and all(t["relation"] != res.CANDIDATE_TYPE and t["posts"] for t in triples)
    before = graph_snapshot(neo4j_driver)
    res.propose_candidates(neo4j_driver)  # same graph, same candidates
    assert graph_snapshot(neo4j_driver) == before


@pytest.mark.neo4j
def test_accepted_merge_moves_mentions_and_evidence_and_survives_reloads(neo4j_driver):
    writer = _load(neo4j_driver)
    res.propose_candidates(neo4j_driver)
    d = res.accept(neo4j_driver, "Event:aurora festival", "aurora fest")
    assert (d.canonical_id, d.merged_id) == (FEST, FESTIVAL)  # two mentions beat one
    assert _candidate_names(neo4j_driver, status="accepted") == {("Event:aurora fest", "Event:aurora festival")}
    counts_before = neo4j_driver.execute_query("MATCH (e:Entity) RETURN count(e) AS n").records[0]["n"]

    report = res.apply_accepted_merges(neo4j_driver, symmetric=writer.symmetric_relations)
    assert report.as_dict() == {"decisions": 1, "merges_applied": 1, "mentions_moved": 1, "relations_moved": 1,
                                "relations_combined": 1, "self_loops_dropped": 0, "canonical_recreated": 0}
    assert neo4j_driver.execute_query("MATCH (e:Entity) RETURN count(e) AS n").records[0]["n"] == counts_before - 1
    assert not neo4j_driver.execute_query("MATCH (e:Entity {id: $id}) RETURN e", id=FESTIVAL).records
    fest = neo4j_driver.execute_query("MATCH (e:Entity {id: $id}) RETURN e", id=FEST).records[0]["e"]
    assert fest["merged_ids"] == [FESTIVAL] and fest["aliases"] == ["Aurora Festival", "AuroraFest", "aurora fest"]
    mentions = neo4j_driver.execute_query(
        "MATCH (p:Post)-[m:MENTIONS]->(:Entity {id: $id}) RETURN p.id AS p, m.start AS s ORDER BY p, s", id=FEST)
    assert [(r["p"], r["s"]) for r in mentions.records] == [("p1", 15), ("p1", 55), ("p2", 11)]
    triples = neo4j_driver.execute_query(
        "MATCH (:Entity {id: $id})-[r:LOCATED_IN]->(b:Entity) RETURN b.name AS b, properties(r) AS r", id=FEST)
    assert len(triples.records) == 1  # one triple, evidence combined: p1 keeps its best score (0.8 > 0.7)
    r = triples.records[0]["r"]
    assert triples.records[0]["b"] == "bergen" and r["post_ids"] == ["p1", "p2"]
    assert r["scores"] == pytest.approx([0.8, 0.9]) and r["evidence_count"] == 2
    assert r["max_score"] == pytest.approx(0.9)
    merged, checksum = graph_snapshot(neo4j_driver), graph_checksum(neo4j_driver)
    assert duplicates(neo4j_driver) == {"nodes": 0, "relationships": 0}

    again = res.apply_accepted_merges(neo4j_driver, symmetric=writer.symmetric_relations)
    assert again.merges_applied == 0 and graph_checksum(neo4j_driver) == checksum  # applying twice = once

    # A re-run writes the old id again (its post still says "Aurora Festival"); the load re-applies the
    # accepted merges in its own transaction, so the merge survives it.
    from kg_loader.load import load_extraction

    reload = load_extraction(writer, *_extraction(), run_id="run-1")
    assert reload.merges_applied == 1 and reload.as_dict()["merges_applied"] == 1
    assert not neo4j_driver.execute_query("MATCH (e:Entity {id: $id}) RETURN e", id=FESTIVAL).records
    assert graph_snapshot(neo4j_driver) == merged and graph_checksum(neo4j_driver) == checksum
    # the old id written again behind the loader's back: the next apply (here in a caller's transaction) folds it in
    neo4j_driver.execute_query("CREATE (:Entity:Event {id: $id, name: 'aurora festival', type: 'Event'})", id=FESTIVAL)
    with neo4j_driver.session() as session:
        applied = session.execute_write(res.apply_accepted_merges_tx, writer.symmetric_relations)
    assert applied.merges_applied == 1 and graph_checksum(neo4j_driver) == checksum
    # a proposal run skips the decided pair and keeps the others
    res.propose_candidates(neo4j_driver)
    assert ("Event:aurora fest", "Event:aurora festival") not in _candidate_names(neo4j_driver)
    assert ("Event:aurora fest", "Event:aurorafest") in _candidate_names(neo4j_driver)


@pytest.mark.neo4j
def test_a_merge_drops_self_loops_and_keeps_symmetric_triples_in_canonical_order(neo4j_driver):
    writer = _load(neo4j_driver)
    res.propose_candidates(neo4j_driver)
    d = res.accept(neo4j_driver, HANDLE[:10], "Person:Kofi Mensah")  # an id prefix and Type:name
    assert (d.canonical_id, d.merged_id) == (KOFI, HANDLE)
    res.apply_accepted_merges(neo4j_driver, symmetric=writer.symmetric_relations)
    peers = neo4j_driver.execute_query(
        "MATCH (a:Entity)-[r:PEER]->(b:Entity) RETURN a.id AS a, b.id AS b, r.post_ids AS posts, r.scores AS s")
    got = {frozenset((p["a"], p["b"])): p for p in peers.records}
    assert set(got) == {frozenset((KOFI, TOM)), frozenset((KOFI, ANA))}  # one triple per pair, both ways
    assert all(p["a"] < p["b"] for p in peers.records)  # symmetric: the smaller id is the head
    # kofi_runs~tom (p4) and tom~kofi (p6); ana~kofi_runs (p9: head and tail swap, ana < kofi < kofi_runs)
    tom, ana = got[frozenset((KOFI, TOM))], got[frozenset((KOFI, ANA))]
    assert tom["posts"] == ["p4", "p6"] and tom["s"] == pytest.approx([0.6, 0.8])
    assert ana["posts"] == ["p10", "p9"] and ana["s"] == pytest.approx([0.4, 0.5])
    # a relation between the two sides of a merge would be a self-loop: dropped
    res.accept(neo4j_driver, "Event:aurora fest", "Event:aurorafest")
    neo4j_driver.execute_query(
        "MATCH (a:Entity {id: $a}), (b:Entity {id: $b}) CREATE (a)-[:LOCATED_IN {relation: 'located_in', "
        "post_ids: ['p3'], scores: [0.5], evidence_count: 1, max_score: 0.5}]->(b)", a=LOWER, b=FEST)
    report = res.apply_accepted_merges(neo4j_driver, symmetric=writer.symmetric_relations)
    assert report.self_loops_dropped == 1
    assert not neo4j_driver.execute_query("MATCH (e:Entity)-[r]->(e) RETURN r").records


@pytest.mark.neo4j
def test_rejected_pairs_are_never_proposed_again(neo4j_driver):
    _load(neo4j_driver)
    res.propose_candidates(neo4j_driver)
    res.reject(neo4j_driver, "kofi_runs", "kofi mensah", note="a fan account")
    assert ("Person:kofi mensah", "Person:kofi_runs") not in _candidate_names(neo4j_driver)  # edge gone at once
    for _ in range(2):  # a proposal run, then a re-load and another
        res.propose_candidates(neo4j_driver)
        assert ("Person:kofi mensah", "Person:kofi_runs") not in _candidate_names(neo4j_driver)
        _load(neo4j_driver)
    (decision,) = res.read_decisions(neo4j_driver)
    assert (decision.decision, decision.note, decision.id) == ("rejected", "a fan account", res.pair_id(KOFI, HANDLE))
    with pytest.raises(res.ResolutionError, match="ambiguous"):
        res.accept(neo4j_driver, "coastline games", "Event:aurora fest")  # an Event and a Product by that name


@pytest.mark.neo4j
def test_a_rejection_holds_through_later_merges_and_types_need_evidence(neo4j_driver):
    writer = _load(neo4j_driver)
    res.reject(neo4j_driver, "Event:aurorafest", "Event:aurora festival")
    res.accept(neo4j_driver, "Event:aurora festival", "Event:aurora fest")
    res.apply_accepted_merges(neo4j_driver, symmetric=writer.symmetric_relations)
    res.propose_candidates(neo4j_driver)  # aurorafest ~ aurora fest now pairs aurorafest with aurora festival
    assert ("Event:aurora fest", "Event:aurorafest") not in _candidate_names(neo4j_driver)
    # merged-away names and ids still resolve, to the entity that stays
    assert res.resolve_entity(neo4j_driver, "Event:Aurora Festival") == FEST
    assert res.resolve_entity(neo4j_driver, FESTIVAL) == FEST
    # across types only with a cross-type candidate (equal names) or when told
    with pytest.raises(res.ResolutionError, match="different types"):
        res.accept(neo4j_driver, "Location:riverside", "Organization:riverside rovers")
    d = res.accept(neo4j_driver, "Event:coastline games", "Product:coastline games")
    assert d.cross_type and d.reasons and "cross_type" in d.reasons
    assert res.apply_accepted_merges(neo4j_driver, symmetric=writer.symmetric_relations).merges_applied == 1
    games = neo4j_driver.execute_query("MATCH (e:Entity {name: 'coastline games'}) RETURN e.type AS t, labels(e) AS l")
    assert len(games.records) == 1 and games.records[0]["t"] == "Product"  # its triple is the evidence that decides
    assert sorted(games.records[0]["l"]) == ["Entity", "Product"]


@pytest.mark.neo4j
def test_auto_accept_is_off_by_default_and_never_crosses_types(neo4j_driver):
    writer = _load(neo4j_driver)
    assert res.propose_candidates(neo4j_driver).auto_accepted == []
    assert res.read_decisions(neo4j_driver) == []
    report = res.propose_candidates(neo4j_driver, auto_accept_threshold=0.7)
    cross = {c.pair_id for c in report.candidates if c.cross_type}
    assert cross and not cross & set(report.auto_accepted)  # coastline games scores 0.75, two types: left
    assert set(report.auto_accepted) == {res.pair_id(FEST, FESTIVAL), res.pair_id(FEST, LOWER)}  # kofi: 0.575
    assert {d.decided_by for d in res.read_decisions(neo4j_driver)} == {"auto"}
    assert res.apply_accepted_merges(neo4j_driver, symmetric=writer.symmetric_relations).merges_applied == 2
    names = neo4j_driver.execute_query("MATCH (e:Event) RETURN e.name AS n ORDER BY n").records
    assert [r["n"] for r in names] == ["aurora fest", "coastline games"]


def test_cli_registers_the_entities_group():
    from app.cli import build_parser

    args = build_parser().parse_args(["entities", "accept", "a", "b", "--allow-cross-type"])
    assert args.allow_cross_type and (args.a, args.b) == ("a", "b")
    args = build_parser().parse_args(["entities", "propose"])
    assert args.auto_accept_threshold is None  # off by default


@pytest.mark.neo4j
def test_the_review_commands_end_to_end(neo4j_driver, capsys):
    """`mmkg entities ...` against the session's server (its address is in the environment)."""
    from app.cli import main

    _load(neo4j_driver)
    assert main(["entities", "propose", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report"]["candidates"] == 4 and out["report"]["auto_accepted"] == []
    assert main(["entities", "candidates"]) == 0
    table = capsys.readouterr().out
    assert "Event:aurora fest [" in table and "token_prefix" in table and "cross_type" in table
    assert main(["entities", "accept", "Event:aurora festival", "Event:aurora fest"]) == 0
    assert "'merges_applied': 1" in capsys.readouterr().out
    assert main(["entities", "reject", "Event:aurora festival", "Event:aurora fest"]) == 2  # one entity now
    assert "not undone" in capsys.readouterr().err
    assert main(["entities", "reject", "kofi_runs", "Person:kofi mensah", "--note", "fan account"]) == 0
    assert main(["entities", "decisions"]) == 0
    listed = capsys.readouterr().out
    assert "accepted  Event:aurora festival -> Event:aurora fest" in listed and "fan account" in listed
