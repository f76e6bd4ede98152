"""A person's rejection of a relation triple (``kg_loader.relation_review``, ``mmkg relations ...``): the triple goes at
once and no later load writes it again; allowing it back lets the next load write it."""

from __future__ import annotations

import json

import pytest

from kg_loader import relation_review as rr
from kg_loader.load import load_extraction
from tests.test_resolution import _extraction, _load


def _triples(driver) -> set[tuple[str, str, str]]:
    records = driver.execute_query("MATCH (h:Entity)-[r]->(t:Entity) WHERE r.relation IS NOT NULL "
                                   "RETURN h.name AS h, r.relation AS r, t.name AS t").records
    return {(r["h"], r["r"], r["t"]) for r in records}


def test_a_decision_is_keyed_by_names_and_a_symmetric_one_covers_both_directions():
    assert rr.decision_id("b", "peer", "a", symmetric=True) == rr.decision_id("a", "peer", "b", symmetric=True) == "a|peer|b"
    assert rr.decision_id("b", "located_in", "a", symmetric=False) == "b|located_in|a"
    assert rr.relation_of("LOCATED_IN", ["located_in", "peer"]) == "located_in"
    with pytest.raises(rr.RelationReviewError, match="no relation 'lives_in'.*known: located_in, peer"):
        rr.relation_of("lives_in", ["peer", "located_in"])


@pytest.mark.neo4j
def test_a_rejected_triple_goes_now_and_stays_out_of_reloads_until_allowed(neo4j_driver):
    writer = _load(neo4j_driver)
    relations, symmetric = writer.allowed_relations, writer.symmetric_relations
    before = _triples(neo4j_driver)
    assert ("riverside rovers", "located_in", "riverside") in before

    decision, removed = rr.reject_triple(neo4j_driver, "Riverside Rovers", "LOCATED_IN", "riverside",
                                         relations=relations, symmetric=symmetric, note="a team named for its town")
    assert removed == 1 and decision.id == "riverside rovers|located_in|riverside"
    assert _triples(neo4j_driver) == before - {("riverside rovers", "located_in", "riverside")}

    reload = load_extraction(writer, *_extraction(), run_id="run-2")  # the posts that gave it, loaded again
    assert reload.triples_rejected == 1 and reload.as_dict()["triples_rejected"] == 1
    assert ("riverside rovers", "located_in", "riverside") not in _triples(neo4j_driver)
    assert _triples(neo4j_driver) == before - {("riverside rovers", "located_in", "riverside")}
    assert [d.note for d in rr.read_decisions(neo4j_driver)] == ["a team named for its town"]

    assert rr.allow_triple(neo4j_driver, "riverside rovers", "located_in", "Riverside", relations=relations,
                           symmetric=symmetric)
    assert not rr.allow_triple(neo4j_driver, "riverside rovers", "located_in", "Riverside", relations=relations,
                               symmetric=symmetric)  # nothing left to drop
    again = load_extraction(writer, *_extraction(), run_id="run-3")
    assert again.triples_rejected == 0 and _triples(neo4j_driver) == before


@pytest.mark.neo4j
def test_a_symmetric_triple_is_rejected_in_either_order_and_a_bad_decision_is_refused(neo4j_driver):
    writer = _load(neo4j_driver)
    relations, symmetric = writer.allowed_relations, writer.symmetric_relations
    peers = {t for t in _triples(neo4j_driver) if t[1] == "peer" and {"tom adeyemi", "kofi mensah"} == {t[0], t[2]}}
    assert len(peers) == 1  # stored once, in canonical order
    stored_head = next(iter(peers))[0]
    other = ({"tom adeyemi", "kofi mensah"} - {stored_head}).pop()
    _, removed = rr.reject_triple(neo4j_driver, other, "peer", stored_head, relations=relations, symmetric=symmetric)
    assert removed == 1 and not peers & _triples(neo4j_driver)
    load_extraction(writer, *_extraction(), run_id="run-2")
    assert not peers & _triples(neo4j_driver)

    with pytest.raises(rr.RelationReviewError, match="no entity named 'nobody'"):
        rr.reject_triple(neo4j_driver, "Nobody", "peer", "ana costa", relations=relations, symmetric=symmetric)
    with pytest.raises(rr.RelationReviewError, match="to itself"):
        rr.reject_triple(neo4j_driver, "Ana Costa", "peer", "ana costa", relations=relations, symmetric=symmetric)


@pytest.mark.neo4j
def test_the_relations_commands_end_to_end(neo4j_driver, capsys, monkeypatch, tmp_path):
    """`mmkg relations ...` against the session's server, under the fixture's label set."""
    import yaml

    from app.cli import main
    from mmkg.settings import PipelineSettings

    _load(neo4j_driver)
    spec = yaml.safe_load(open(PipelineSettings.from_env().ontology_path, encoding="utf-8"))
    spec["relation_types"].append({"name": "place_of_residence", "description": "the person lives in the location",
                                   "allowed": [["Person", "Location"]]})
    ontology = tmp_path / "ontology.yaml"
    ontology.write_text(yaml.safe_dump(spec), encoding="utf-8")
    monkeypatch.setenv("MMKG_ONTOLOGY", str(ontology))

    assert main(["relations", "review", "--json", "--limit", "50"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(_triples(neo4j_driver)) - 1  # one triple has two posts of evidence
    assert [(r["posts"], r["max_score"]) for r in rows] == sorted((r["posts"], r["max_score"]) for r in rows)
    assert all(r["post_text"] for r in rows)
    assert main(["relations", "review", "--relation", "PLACE_OF_RESIDENCE"]) == 0
    assert "kofi mensah (Person) PLACE_OF_RESIDENCE durban (Location)" in capsys.readouterr().out
    assert main(["relations", "reject", "kofi mensah", "lives_in", "durban"]) == 2
    assert "no relation 'lives_in'" in capsys.readouterr().err
    assert main(["relations", "reject", "Kofi Mensah", "place_of_residence", "Durban", "--note", "he races there"]) == 0
    assert "1 relationship(s) deleted now" in capsys.readouterr().out
    assert main(["relations", "decisions"]) == 0
    assert "rejected  kofi mensah PLACE_OF_RESIDENCE durban  (by user; he races there)" in capsys.readouterr().out
    assert main(["relations", "allow", "kofi mensah", "place_of_residence", "durban"]) == 0
    assert "rejection dropped" in capsys.readouterr().out


def test_names_after_merges_follow_chains_to_the_entity_that_stays():
    from kg_loader.resolution import Decision, names_after_merges

    def merge(merged, canonical):
        return Decision(id=f"{merged}|{canonical}", decision="accepted", a_id=merged, b_id=canonical,
                        canonical_id=f"id-{canonical}", merged_id=f"id-{merged}", canonical_name=canonical,
                        merged_name=merged)

    rejected = Decision(id="x|y", decision="rejected", a_id="id-x", b_id="id-y")
    assert names_after_merges([merge("aurora fest", "aurora festival"), merge("aurora festival", "aurora fest 2026"),
                               rejected]) == {"aurora fest": "aurora fest 2026", "aurora festival": "aurora fest 2026"}
    assert names_after_merges([rejected]) == {}


@pytest.mark.neo4j
def test_a_rejection_follows_an_accepted_merge_to_the_entity_that_stays(neo4j_driver):
    from kg_loader import resolution as res

    writer = _load(neo4j_driver)
    relations, symmetric = writer.allowed_relations, writer.symmetric_relations
    assert {("aurora festival", "located_in", "bergen"), ("aurora fest", "located_in", "bergen")} <= _triples(neo4j_driver)
    _, removed = rr.reject_triple(neo4j_driver, "Aurora Festival", "located_in", "Bergen", relations=relations,
                                  symmetric=symmetric)
    assert removed == 1 and ("aurora fest", "located_in", "bergen") in _triples(neo4j_driver)

    res.propose_candidates(neo4j_driver)
    merge = res.accept(neo4j_driver, "Event:aurora festival", "aurora fest")
    assert (merge.merged_name, merge.canonical_name) == ("aurora festival", "aurora fest")
    reload = load_extraction(writer, *_extraction(), run_id="run-2")  # writes "aurora festival" again, merges it
    assert reload.triples_rejected == 1  # the same fact under the name that stays
    triples = _triples(neo4j_driver)
    assert not {t for t in triples if t[1] == "located_in" and t[2] == "bergen" and "aurora" in t[0]}, triples

    # the merged-away name is no entity any more, yet a person may still name it
    decision, _ = rr.reject_triple(neo4j_driver, "aurora festival", "present_in", "priya nair", relations=relations,
                                   symmetric=symmetric)
    assert decision.head == "aurora festival"
    with pytest.raises(rr.RelationReviewError, match="no entity named 'aurora fiesta'"):
        rr.reject_triple(neo4j_driver, "aurora fiesta", "located_in", "bergen", relations=relations, symmetric=symmetric)
