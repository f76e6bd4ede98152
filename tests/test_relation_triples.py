"""From relation mentions to triples: one reading per pair, no self-loops, symmetric relations once."""

from __future__ import annotations

from pathlib import Path

import pytest

from extraction.zero_shot import best_reading_per_pair
from mmkg.identity import entity_id
from kg_loader.records import relation_rows
from mmkg.records import Mention, RelationMention, TypedMention


def _tm(post: str, start: int, text: str, etype: str) -> TypedMention:
    return TypedMention(Mention(post, start, start + len(text), text, "test"), etype, 0.9, "m/1", "ls")


def _rel(head: TypedMention, tail: TypedMention, relation: str, score: float) -> RelationMention:
    return RelationMention(head.mention.post_id, head, tail, relation, score, "m/1", "ls")


ACCRA, DURBAN = _tm("p1", 0, "Accra", "Location"), _tm("p1", 10, "Durban", "Location")


def test_a_pair_keeps_its_better_reading_only():
    forward, backward = _rel(ACCRA, DURBAN, "located_in", 0.4), _rel(DURBAN, ACCRA, "located_in", 0.7)
    other_post = _rel(_tm("p2", 0, "Accra", "Location"), _tm("p2", 10, "Durban", "Location"), "located_in", 0.1)
    kept = best_reading_per_pair([(forward, 1.0), (backward, 2.0), (other_post, 0.5)])
    assert kept == [backward, other_post]  # the raw score decides, per post and unordered pair
    assert best_reading_per_pair([(forward, 3.0), (backward, 2.0)]) == [forward]


def test_the_account_a_retweet_quotes_is_no_relation_argument():
    """``RT @handle`` names who posted the words, not what they are about: its mention stays (an entity of the post)
    but pairs no relation; a handle inside the text still does, and so does a post that only mentions 'RT'."""
    from extraction.zero_shot import relation_candidates
    from mmkg.ontology import Ontology
    from mmkg.records import Post

    onto = Ontology.from_dict({"version": 1, "entity_types": [{"name": "Person", "description": "a person"},
                                                             {"name": "Organization", "description": "an org"}],
                               "relation_types": [{"name": "member_of", "description": "member",
                                                   "allowed": [["Person", "Organization"]]},
                                                  {"name": "employs", "description": "employs",
                                                   "allowed": [["Organization", "Person"]]}]})
    text = "RT @INCIndia : Congress President @RahulGandhi met the press"
    rt = Post("p1", text, "2026-11-01T00:00:00+00:00")
    assert rt.retweet_source == (3, 12) and rt.is_retweet_source(4, 12) and not rt.is_retweet_source(34, 46)
    source, congress, rahul = (_tm("p1", 4, "INCIndia", "Organization"), _tm("p1", 15, "Congress", "Organization"),
                               _tm("p1", 35, "RahulGandhi", "Person"))
    pairs = {(h.mention.text, t.mention.text) for h, t, _ in relation_candidates({"p1": rt}, [source, congress, rahul], onto)}
    assert pairs == {("RahulGandhi", "Congress"), ("Congress", "RahulGandhi")}
    plain = Post("p2", "Jon from RT @ the show with the Tigers", "2026-11-01T00:00:00+00:00")
    assert plain.retweet_source is None
    jon, tigers = _tm("p2", 0, "Jon", "Person"), _tm("p2", 32, "Tigers", "Organization")
    assert len(relation_candidates({"p2": plain}, [jon, tigers], onto)) == 2


def test_two_mentions_of_one_name_pair_no_relation():
    """A hashtag of the name and a handle spelling it read as the name itself (typing decides them with it), so
    no relation joins them to it; a handle holding only a word of the name still pairs."""
    from extraction.zero_shot import relation_candidates
    from mmkg.ontology import Ontology
    from mmkg.records import Post

    onto = Ontology.from_dict({"version": 1, "entity_types": [{"name": "Person", "description": "a person"}],
                               "relation_types": [{"name": "peer", "description": "peers", "symmetric": True,
                                                   "allowed": [["Person", "Person"]]}]})
    text = "Marta Silva and Ana Costa again #MartaSilva @martasilva9 @ana_runs"
    post = Post("p1", text, "2026-11-01T00:00:00+00:00")
    marta, ana, tag, handle, runs = (_tm("p1", text.index(s), s, "Person")
                                     for s in ("Marta Silva", "Ana Costa", "MartaSilva", "martasilva9", "ana_runs"))
    pairs = {frozenset((h.mention.text, t.mention.text))
             for h, t, _ in relation_candidates({"p1": post}, [marta, ana, tag, handle, runs], onto)}
    assert pairs == {frozenset(p) for p in [("Marta Silva", "Ana Costa"), ("Marta Silva", "ana_runs"),
                                            ("Ana Costa", "MartaSilva"), ("Ana Costa", "martasilva9"),
                                            ("Ana Costa", "ana_runs"), ("MartaSilva", "ana_runs"),
                                            ("martasilva9", "ana_runs")]}


def test_self_loops_are_dropped_and_counted():
    texts = {"p1": "Monsoon Letters #MonsoonLetters"}
    name, tag = _tm("p1", 0, "Monsoon Letters", "Product"), _tm("p1", 17, "MonsoonLetters", "Product")
    rows, dropped = relation_rows([_rel(name, tag, "created_by", 0.9)], "run", texts)
    assert rows == [] and dropped == {"self_loop": 1, "reverse_in_post": 0}


def test_a_symmetric_relation_is_written_in_one_canonical_order():
    a, b = _tm("p1", 0, "Marta Silva", "Person"), _tm("p2", 0, "Ana Costa", "Person")
    b_in_p1, a_in_p2 = _tm("p1", 20, "Ana Costa", "Person"), _tm("p2", 20, "Marta Silva", "Person")
    rows, _ = relation_rows([_rel(a, b_in_p1, "peer", 0.8), _rel(b, a_in_p2, "peer", 0.6)], "run",
                            symmetric={"peer"})
    assert {(r.head_id, r.tail_id) for r in rows} == {tuple(sorted((entity_id("Marta Silva", "Person"),
                                                                     entity_id("Ana Costa", "Person"))))}
    asym, _ = relation_rows([_rel(a, b_in_p1, "peer", 0.8), _rel(b, a_in_p2, "peer", 0.6)], "run")
    assert len({(r.head_id, r.tail_id) for r in asym}) == 2  # not symmetric: each post's own direction


def test_one_post_never_states_an_asymmetric_triple_both_ways():
    texts = {"p1": "Accra and Durban, #Accra"}
    tag = _tm("p1", 18, "Accra", "Location")
    rows, dropped = relation_rows([_rel(ACCRA, DURBAN, "located_in", 0.4), _rel(DURBAN, tag, "located_in", 0.7)],
                                  "run", texts)
    assert [(r.head_id, r.tail_id, r.score) for r in rows] == [(entity_id("Durban", "Location"),
                                                                 entity_id("Accra", "Location"), 0.7)]
    assert dropped["reverse_in_post"] == 1


@pytest.mark.neo4j
def test_the_loader_writes_symmetric_triples_once_and_reports_drops(neo4j_driver):
    from kg_loader.load import load_extraction, writer_for
    from mmkg.ontology import Ontology
    from mmkg.records import Post

    onto = Ontology.from_dict({"version": 1, "entity_types": [{"name": "Person", "description": "a person"}],
                               "relation_types": [{"name": "peer", "description": "peers", "symmetric": True,
                                                   "allowed": [["Person", "Person"]]}]})
    posts = [Post("p1", "Marta Silva and Ana Costa", "2026-11-01T00:00:00Z"),
             Post("p2", "Ana Costa and Marta Silva and @MartaSilva", "2026-11-01T00:00:00Z")]
    m1, a1 = _tm("p1", 0, "Marta Silva", "Person"), _tm("p1", 16, "Ana Costa", "Person")
    a2, m2, h2 = _tm("p2", 0, "Ana Costa", "Person"), _tm("p2", 14, "Marta Silva", "Person"), _tm("p2", 31, "MartaSilva", "Person")
    writer = writer_for(neo4j_driver, onto)
    writer.ensure_schema()
    report = load_extraction(writer, posts, [m1, a1, a2, m2, h2],
                             [_rel(m1, a1, "peer", 0.8), _rel(a2, m2, "peer", 0.6), _rel(m2, h2, "peer", 0.9)], "run-1")
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (a:Person)-[r:PEER]->(b:Person) RETURN a.name AS a, b.name AS b, r.evidence_count AS n")
    assert len(records) == 1 and records[0]["n"] == 2 and {records[0]["a"], records[0]["b"]} == {"marta silva", "ana costa"}
    assert report.dropped["relations_self_loop"] == 1 and report.as_dict()["dropped"]["relations_self_loop"] == 1


def test_a_narrower_type_that_fits_replaces_its_parent():
    import torch

    from extraction.zero_shot import agree_on_types, narrowest

    # types: 0 Person, 1 Organization, 2 SportsTeam (parent 1), 3 Club (parent 2)
    parents = [None, None, 1, 2]
    assert narrowest(torch.tensor([0.0, 3.0, 1.5, 0.2]), 1, parents, min_score=1.0) == 2  # fits: narrows
    assert narrowest(torch.tensor([0.0, 3.0, 1.5, 1.2]), 1, parents, min_score=1.0) == 3  # and on down
    assert narrowest(torch.tensor([0.0, 3.0, 0.5, 2.0]), 1, parents, min_score=1.0) == 1  # a child must fit
    assert narrowest(torch.tensor([3.0, 0.0, 2.0, 2.0]), 0, parents, min_score=1.0) == 0  # not its child
    raw = torch.tensor([[0.0, 3.0, 1.4, 0.0], [0.0, 2.8, 0.8, 0.0], [0.0, 3.0, 0.2, 0.0]])
    # one surface form: the mean SportsTeam score (1.1) fits, so both "falcons" mentions narrow together
    assert agree_on_types(["falcons", "falcons", "acme"], raw, min_score=1.0, parents=parents) == [2, 2, 1]
    assert agree_on_types(["falcons", "falcons", "acme"], raw, min_score=1.0) == [1, 1, 1]


def test_a_surface_form_that_reads_as_two_types_abstains_under_the_gap():
    import torch

    from extraction.zero_shot import agree_on_types, lineage, type_gap

    # types: 0 Person, 1 Location, 2 Organization, 3 SportsTeam (parent 2)
    parents = [None, None, None, 2]
    assert lineage(2, parents) == {2, 3} and lineage(3, parents) == {2, 3} and lineage(0, parents) == {0}
    # "porto": Organization 4.0 and Location 3.8 on average over its two mentions; "lisbon falcons": clear.
    raw = torch.tensor([[0.0, 3.5, 4.4, 0.5], [0.0, 4.1, 3.6, 0.5], [0.0, 1.0, 4.0, 3.9]])
    keys = ["porto", "porto", "lisbon falcons"]
    assert type_gap(raw[:2].mean(0), 2, parents) == pytest.approx(0.2)
    assert type_gap(raw[2], 2, parents) == pytest.approx(3.0)  # its own subtype does not count against it
    assert agree_on_types(keys, raw, min_score=1.0, parents=parents) == [2, 2, 3]
    assert agree_on_types(keys, raw, min_score=1.0, parents=parents, min_gap=0.25) == [None, None, 3]
    assert agree_on_types(keys, raw, min_score=1.0, parents=parents, min_gap=3.5) == [None, None, None]


def test_the_shipped_typer_reads_its_gap_from_the_card_and_stages_it(tmp_path):
    import json

    from extraction import staging

    card = json.loads((Path(__file__).resolve().parents[1] / "models/checkpoints/met-tweets/checkpoint.json").read_text())
    gap = card["thresholds"]["decision"]["min_gap"]
    assert gap > 0 and "type_rules" in card["thresholds"]["decision"]["command"]
    ts = staging.TypeScores(entity_types=("Person",), min_score=1.0, label_set_id="x", post_ids=("p",), spans=((0, 1),),
                            keys=("a",), shard_types=("Person",), scores=((2.0,),), min_gap=gap)
    assert staging.read_type_scores(staging.write_type_scores(tmp_path / "t.parquet", ts)) == ts
    no_gap = staging.TypeScores(entity_types=("Person",), min_score=1.0, label_set_id="x")
    assert staging.read_type_scores(staging.write_type_scores(tmp_path / "n.parquet", no_gap)).min_gap is None


def test_one_surface_form_gets_one_type_from_all_its_mentions():
    import torch

    from extraction.zero_shot import agree_on_types

    # types: 0 Person, 1 Organization, 2 Location. "kofi" twice Person-ish, once Organization-ish (one
    # mistyped mention); "porto" a homonym: two mentions clearly a place, two clearly a club; "zed" too weak.
    raw = torch.tensor([[3.0, 2.5, 0.0], [3.2, 2.0, 0.0], [2.6, 2.9, 0.0],
                        [0.0, 1.0, 4.0], [0.0, 0.9, 4.2], [0.0, 4.5, 1.0], [0.0, 4.4, 1.1],
                        [0.5, 0.2, 0.1]])
    keys = ["kofi", "kofi", "kofi", "porto", "porto", "porto", "porto", "zed"]
    assert agree_on_types(keys, raw, min_score=1.0) == [0, 0, 0, 2, 2, 1, 1, None]
    # without a clear margin every mention follows the consensus (Organization: mean 2.7 vs 2.575)
    assert agree_on_types(keys, raw, min_score=1.0, margin=10.0)[3:7] == [1, 1, 1, 1]


def test_mentions_in_a_script_the_encoders_cannot_read_abstain():
    from extraction.pipeline import readable_script

    assert readable_script("Marta Silva") and readable_script("José Ñúñez") and readable_script("2026")
    assert not readable_script("오늘") and not readable_script("東京タワー")
    assert readable_script("K-pop 오") is True  # mostly Latin letters
