"""The graph-quality benchmark's scoring (bench/graph_quality/scoring.py) on hand-made records:
gold building (duplicate texts merged, token -> character spans, gold names), matching a gold entity
(by the graph's normalised name, the headline, and by exact / overlapping span), the two MNRE
ontologies, the direction and symmetric rules, where a triple instance lands, P/R/F, and the type maps. No weights, no research
data; one test runs the benchmark's Cypher against the session's Neo4j (marked ``neo4j``)."""

from __future__ import annotations

import pytest

from bench.graph_quality.scoring import (
    GoldAnnotation,
    GoldPair,
    TripleInstance,
    build_mnre_posts,
    char_span,
    coarse_type,
    direction_ok,
    entity_coverage,
    example_spans,
    gold_name,
    gold_pairs,
    judge_instance,
    keys_match,
    leaked_texts,
    mnre_post_id,
    one_name_pairs,
    prf,
    recovered,
    relation_name,
    WNUT_TO_COARSE,
    score_entities,
    score_relations,
    spacy_coarse_type,
    spacy_ontology_type,
    spans_match,
    split_leaked,
    typed_allowed,
    typed_gold_spans,
    written_offsets,
)

TEST_RELS = ["/per/per/couple", "/org/loc/locate_at", "/misc/loc/held_on"]


def line(tokens: str, h: tuple[int, int], t: tuple[int, int], relation: str, img: str = "x.jpg") -> dict:
    toks = tokens.split()
    return {"token": toks, "h": {"name": " ".join(toks[h[0]:h[1]]), "pos": list(h)},
            "t": {"name": " ".join(toks[t[0]:t[1]]), "pos": list(t)}, "img_id": img, "relation": relation}


NADAL = "RT @cnn : Rafael Nadal engaged to Mery Perello in Mallorca"
#        0123456789012345678901234567890123456789012345678901234567
# "Rafael Nadal" = [10, 22), "Mery Perello" = [34, 46), "Mallorca" = [50, 58), "@cnn" = [3, 7)
NADAL_SPAN, MERY_SPAN, MALLORCA_SPAN, CNN_SPAN = (10, 22), (34, 46), (50, 58), (3, 7)


# ------------------------------------------------------------------------------------ gold building
def test_token_offsets_become_character_spans_of_the_space_joined_text():
    toks = NADAL.split()
    assert char_span(toks, [3, 5]) == NADAL_SPAN and NADAL[10:22] == "Rafael Nadal"
    assert char_span(toks, [7, 9]) == MERY_SPAN and NADAL[34:46] == "Mery Perello"
    assert char_span(toks, [1, 2]) == CNN_SPAN and NADAL[3:7] == "@cnn"
    with pytest.raises(ValueError):
        char_span(toks, [5, 5])


def test_lines_sharing_a_text_are_one_post_with_all_their_annotations():
    rows = [
        line(NADAL, (3, 5), (7, 9), "/per/per/couple"),
        line("Another tweet about Paris", (3, 4), (0, 1), "None"),
        line(NADAL, (3, 5), (10, 11), "/per/loc/place_of_residence"),
        line(NADAL, (3, 5), (7, 9), "/per/per/couple"),  # exact duplicate annotation: kept once
        line(NADAL, (1, 2), (3, 5), "None"),
    ]
    posts = build_mnre_posts(rows)
    assert [p.text for p in posts] == [NADAL, "Another tweet about Paris"]
    nadal = posts[0]
    assert nadal.id == mnre_post_id(NADAL) == build_mnre_posts(rows[:1])[0].id  # deterministic id
    assert nadal.id != posts[1].id
    assert nadal.lines == [0, 2, 3, 4]
    assert nadal.annotations == [
        GoldAnnotation(NADAL_SPAN, MERY_SPAN, "/per/per/couple"),
        GoldAnnotation(NADAL_SPAN, MALLORCA_SPAN, "/per/loc/place_of_residence"),
        GoldAnnotation(CNN_SPAN, NADAL_SPAN, None),  # "None" kept, as no relation
    ]


def test_an_entity_name_that_is_not_its_span_fails_loudly():
    row = line(NADAL, (3, 5), (7, 9), "/per/per/couple")
    row["h"]["name"] = "Nadal"
    with pytest.raises(ValueError, match="not the text of its span"):
        build_mnre_posts([row])


def test_gold_pairs_are_unordered_and_scoped_to_what_the_ontology_expresses():
    rows = [
        line(NADAL, (3, 5), (7, 9), "/per/per/couple"),
        line(NADAL, (7, 9), (3, 5), "/per/per/peer"),  # same unordered pair, relation outside the ontology
        line(NADAL, (3, 5), (10, 11), "/per/loc/place_of_residence"),
        line(NADAL, (1, 2), (3, 5), "None"),
    ]
    pairs = {p.spans: p for p in gold_pairs(build_mnre_posts(rows)[0], TEST_RELS)}
    couple = pairs[(NADAL_SPAN, MERY_SPAN)]
    assert couple.scope == "test"
    assert couple.annotations == (GoldAnnotation(NADAL_SPAN, MERY_SPAN, "/per/per/couple"),)
    assert pairs[(NADAL_SPAN, MALLORCA_SPAN)].scope == "other"
    assert pairs[(CNN_SPAN, NADAL_SPAN)].scope == "none"
    assert len(pairs) == 3


def test_posts_sharing_a_text_with_a_train_relation_sample_are_excluded():
    train_file = [line("A B C D", (0, 1), (2, 3), "/per/per/parent")]
    test_file = [line(NADAL, (3, 5), (7, 9), "/per/per/couple"), line("A B C D", (0, 1), (3, 4), "None"),
                 line("E F", (0, 1), (1, 2), "/per/per/couple")]
    leaked = leaked_texts([train_file, [], test_file], ["/per/per/parent"])
    kept, excluded = split_leaked(build_mnre_posts(test_file), leaked)
    assert [p.text for p in excluded] == ["A B C D"]
    assert [p.text for p in kept] == [NADAL, "E F"]


def test_relation_names_are_valid_ontology_names():
    from mmkg.ontology import Ontology

    assert relation_name("/per/loc/place_of_birth") == "per_loc_place_of_birth"
    onto = Ontology.from_dict({
        "entity_types": [{"name": "Person", "description": "a person"}],
        "relation_types": [{"name": relation_name(r), "description": r, "allowed": [["Person", "Person"]]}
                           for r in TEST_RELS],
    })
    assert [r.neo4j_type for r in onto.relation_types] == ["PER_PER_COUPLE", "ORG_LOC_LOCATE_AT", "MISC_LOC_HELD_ON"]


def test_the_any_types_mnre_ontology_allows_the_test_relations_between_any_two_shipped_types():
    from bench.graph_quality.run import mnre_ontology, relation_name_to_mnre

    onto = mnre_ontology(TEST_RELS, "any")
    types = [e.name for e in onto.entity_types]
    assert {"Person", "Location", "Organization"} <= set(types)
    assert [relation_name_to_mnre(r.name) for r in onto.relation_types] == TEST_RELS
    for r in onto.relation_types:
        assert set(r.allowed) == {(h, t) for h in types for t in types}
        assert getattr(r, "symmetric", r.name == "per_per_couple") == (r.name == "per_per_couple")


def test_typed_allowed_reads_the_argument_types_of_the_relation_name():
    misc = ["Event", "Product", "Location", "Organization"]
    assert typed_allowed("/per/loc/place_of_birth") == [["Person", "Location"]]
    assert typed_allowed("/per/per/couple") == [["Person", "Person"]]
    assert typed_allowed("/org/loc/locate_at") == [["Organization", "Location"]]
    assert typed_allowed("/misc/loc/held_on") == [[m, "Location"] for m in misc]
    assert typed_allowed("/per/misc/nationality") == [["Person", m] for m in misc]
    assert typed_allowed("/misc/misc/part_of") == [[a, b] for a in misc for b in misc]
    with pytest.raises(ValueError):
        typed_allowed("/xyz/loc/somewhere")
    with pytest.raises(ValueError):
        typed_allowed("None")


def test_the_typed_mnre_ontology_is_the_default_and_shares_the_entity_types():
    from bench.graph_quality.run import HEADLINE_ONTOLOGY, mnre_ontology

    assert HEADLINE_ONTOLOGY == "typed"
    typed, anyt = mnre_ontology(TEST_RELS), mnre_ontology(TEST_RELS, "any")
    assert typed.entity_types == anyt.entity_types  # so one typing pass serves both
    assert typed.label_set_id != anyt.label_set_id
    by_name = {r.name: r for r in typed.relation_types}
    assert by_name["per_per_couple"].allowed == (("Person", "Person"),)
    assert getattr(by_name["per_per_couple"], "symmetric", True)
    assert by_name["org_loc_locate_at"].allowed == (("Organization", "Location"),)
    assert len(by_name["misc_loc_held_on"].allowed) == 4
    assert typed.relations_for("Person", "Location") == ()
    assert [r.name for r in anyt.relations_for("Person", "Location")] == [r.name for r in anyt.relation_types]
    with pytest.raises(ValueError):
        mnre_ontology(TEST_RELS, "loose")


def test_relabel_changes_only_the_label_set():
    from bench.graph_quality.run import mnre_ontology, relabel
    from mmkg.records import Mention, TypedMention

    typed, anyt = mnre_ontology(TEST_RELS), mnre_ontology(TEST_RELS, "any")
    tm = TypedMention(Mention("p", 0, 3, "Ann", "test"), "Person", 0.9, "v", typed.label_set_id)
    (out,) = relabel([tm], anyt)
    assert out.label_set_id == anyt.label_set_id and (out.mention, out.entity_type, out.score) == (tm.mention, "Person", 0.9)


# ------------------------------------------------------------------------------ matching and direction
TITANS = "RT @Titans : Mariota and #TitanUp fans in Nashville"
#         0123456789012345678901234567890123456789012345678901
# "@Titans" = [3, 10), "Mariota" = [13, 20), "#TitanUp" = [25, 33), "Nashville" = [42, 51)
TITANS_SPAN, MARIOTA_SPAN, TITANUP_SPAN, NASHVILLE_SPAN = (3, 10), (13, 20), (25, 33), (42, 51)


def test_gold_names_are_the_graph_normalisation_of_the_gold_surface():
    from mmkg.identity import normalize_name
    from mmkg.identity import identity_surface
    from mmkg.records import Mention

    assert TITANS[3:10] == "@Titans" and TITANS[25:33] == "#TitanUp" and TITANS[42:51] == "Nashville"
    assert gold_name("@Titans") == "titans" == normalize_name("Titans")
    assert gold_name("#TitanUp") == "titan up"
    # the detector's span never holds the sign; the graph's name reads it from the post, so they agree
    detected = Mention("p", 4, 10, "Titans", "test")
    assert normalize_name(identity_surface(detected, {"p": TITANS})) == gold_name(TITANS[3:10])
    (post,) = build_mnre_posts([line(TITANS, (1, 2), (8, 9), "/org/loc/locate_at")])
    (ann,) = post.annotations
    assert (ann.head, ann.tail) == (TITANS_SPAN, NASHVILLE_SPAN)
    assert (ann.head_name, ann.tail_name) == ("titans", "nashville")
    assert ann.keys("name") == ("titans", "nashville") and ann.keys("exact") == (TITANS_SPAN, NASHVILLE_SPAN)
    (pair,) = gold_pairs(post, TEST_RELS)
    assert pair.names == ("titans", "nashville") and pair.keys("name") == pair.names


def test_name_matching_finds_a_handle_the_exact_span_misses():
    (post,) = build_mnre_posts([line(TITANS, (1, 2), (8, 9), "/org/loc/locate_at"),
                                line(TITANS, (3, 4), (5, 6), "None")])
    pairs = gold_pairs(post, TEST_RELS)
    # the graph: entity "titans" mentioned at [4, 10) (no "@"), "nashville" at [42, 51)
    found = TripleInstance(post.id, "/org/loc/locate_at", "e-titans", "e-nash", ((4, 10),), (NASHVILLE_SPAN,),
                           head_name="titans", tail_name="nashville")
    assert judge_instance(found, pairs, "name") == {"where": "annotated", "verdict": "correct", "matched": 1}
    assert judge_instance(found, pairs, "exact")["where"] == "unannotated"  # [4, 10) is not [3, 10)
    assert judge_instance(found, pairs, "overlap")["verdict"] == "correct"
    assert recovered(pairs[0].annotations[0], post.id, [found], "name")
    assert not recovered(pairs[0].annotations[0], post.id, [found], "exact")
    backwards = TripleInstance(post.id, "/org/loc/locate_at", "e-nash", "e-titans", (NASHVILLE_SPAN,), ((4, 10),),
                               head_name="nashville", tail_name="titans")
    assert judge_instance(backwards, pairs, "name")["verdict"] == "wrong_direction"
    # "mariota" -> "titan up" is the None pair, matched by names whatever the spans
    none = TripleInstance(post.id, "/per/per/couple", "a", "b", (MARIOTA_SPAN,), ((26, 33),),
                          head_name="mariota", tail_name="titan up")
    assert judge_instance(none, pairs, "name")["verdict"] == "none_pair"
    # a name of another post's entity, or an entity the post does not mention, is not on the pair
    assert judge_instance(TripleInstance("q", "/org/loc/locate_at", "x", "y", ((4, 10),), (NASHVILLE_SPAN,),
                                         head_name="titans", tail_name="nashville"), pairs, "name")["where"] == "unannotated"
    unmentioned = TripleInstance(post.id, "/org/loc/locate_at", "x", "y", (), (NASHVILLE_SPAN,),
                                 head_name="titans", tail_name="nashville")
    assert unmentioned.readings("name") == [] and judge_instance(unmentioned, pairs, "name")["where"] == "unannotated"
    s = score_relations([found, backwards], pairs, TEST_RELS, "name")
    assert (s["on_annotated_pairs"], s["correct"], s["wrong_direction"], s["gold_recovered"]) == (2, 1, 1, 1)
    assert score_relations([found], pairs, TEST_RELS, "exact")["gold_recovered"] == 0


def test_name_matching_needs_names():
    with pytest.raises(ValueError):
        inst("/org/loc/locate_at", (0, 5), (10, 15)).readings("name")
    with pytest.raises(ValueError):
        GoldAnnotation((0, 5), (10, 15), None).keys("name")
    assert keys_match("titans", "titans", "name") and not keys_match("titans", "titan", "name")
    assert not keys_match("", "", "name")  # an empty name matches nothing
    assert not keys_match((3, 10), "titans", "name")


def test_pairs_whose_two_spans_are_one_entity_by_name_are_counted():
    text = "#NYC loves NYC and Paris"
    (post,) = build_mnre_posts([line(text, (0, 1), (2, 3), "/org/loc/locate_at"), line(text, (2, 3), (4, 5), "None")])
    assert one_name_pairs(gold_pairs(post, TEST_RELS)) == {"test": 1}


def test_exact_and_overlap_span_matching():
    assert spans_match((3, 7), (3, 7)) and not spans_match((4, 7), (3, 7))
    assert spans_match((4, 7), (3, 7), "overlap")  # "cnn" inside "@cnn"
    assert not spans_match((0, 3), (3, 7), "overlap")  # touching is not overlapping
    with pytest.raises(ValueError):
        spans_match((0, 1), (0, 1), "fuzzy")


def test_direction_counts_except_for_symmetric_relations():
    located = GoldAnnotation((0, 5), (10, 15), "/org/loc/locate_at")
    assert direction_ok("/org/loc/locate_at", (0, 5), (10, 15), located)
    assert not direction_ok("/org/loc/locate_at", (10, 15), (0, 5), located)  # reversed: wrong
    assert not direction_ok("/misc/loc/held_on", (0, 5), (10, 15), located)  # other relation
    couple = GoldAnnotation((0, 5), (10, 15), "/per/per/couple")
    assert direction_ok("/per/per/couple", (10, 15), (0, 5), couple)  # symmetric: either order
    assert not direction_ok("/per/per/couple", (0, 5), (10, 15), GoldAnnotation((0, 5), (10, 15), None))


def inst(rel: str, head, tail, post: str = "p", evidence: int = 1, hid: str = "h", tid: str = "t") -> TripleInstance:
    return TripleInstance(post, rel, hid, tid, tuple(head) if isinstance(head[0], tuple) else (head,),
                          tuple(tail) if isinstance(tail[0], tuple) else (tail,), evidence)


ORG, LOC, PER1, PER2, OTHER1, OTHER2 = (0, 5), (10, 15), (20, 25), (30, 35), (40, 45), (50, 55)
PAIRS = [
    GoldPair("p", (ORG, LOC), "test", (GoldAnnotation(ORG, LOC, "/org/loc/locate_at"),)),
    GoldPair("p", (PER1, PER2), "none", (GoldAnnotation(PER1, PER2, None),)),
    GoldPair("p", (OTHER1, OTHER2), "other", (GoldAnnotation(OTHER1, OTHER2, "/per/per/peer"),)),
]


def test_where_a_triple_instance_lands_and_its_verdict():
    def verdict(i, mode="exact"):
        j = judge_instance(i, PAIRS, mode)
        return j["where"], j["verdict"]

    assert verdict(inst("/org/loc/locate_at", ORG, LOC)) == ("annotated", "correct")
    assert verdict(inst("/org/loc/locate_at", LOC, ORG)) == ("annotated", "wrong_direction")
    assert verdict(inst("/misc/loc/held_on", ORG, LOC)) == ("annotated", "wrong_relation")
    assert verdict(inst("/per/per/couple", PER1, PER2)) == ("annotated", "none_pair")
    assert verdict(inst("/per/per/couple", OTHER1, OTHER2)) == ("other", None)
    assert verdict(inst("/per/per/couple", ORG, PER1)) == ("unannotated", None)
    assert verdict(inst("/org/loc/locate_at", ORG, LOC, post="q")) == ("unannotated", None)  # other post's gold
    # a mention one character off: unannotated when exact, on the pair when lenient
    assert verdict(inst("/org/loc/locate_at", (1, 5), LOC)) == ("unannotated", None)
    assert verdict(inst("/org/loc/locate_at", (1, 5), LOC), "overlap") == ("annotated", "correct")


def test_an_entity_named_twice_reads_every_mention_and_a_self_loop_needs_two_mentions():
    # head entity mentioned at ORG and at (60, 65): the ORG reading lands on the gold pair
    assert judge_instance(inst("/org/loc/locate_at", [ORG, (60, 65)], LOC), PAIRS)["verdict"] == "correct"
    # a self-loop whose entity is mentioned at ORG and LOC (e.g. "#NYC" and "NYC") reads ORG -> LOC
    loop = TripleInstance("p", "/org/loc/locate_at", "e", "e", (ORG, LOC), (ORG, LOC))
    assert loop.self_loop
    assert judge_instance(loop, PAIRS)["verdict"] == "correct"
    single = TripleInstance("p", "/org/loc/locate_at", "e", "e", (ORG,), (ORG,))
    assert single.span_pairs() == [] and judge_instance(single, PAIRS)["where"] == "unannotated"


def test_recall_needs_relation_and_direction_symmetric_either_way():
    gold = GoldAnnotation(ORG, LOC, "/org/loc/locate_at")
    assert recovered(gold, "p", [inst("/org/loc/locate_at", ORG, LOC)])
    assert not recovered(gold, "p", [inst("/org/loc/locate_at", LOC, ORG)])
    assert not recovered(gold, "q", [inst("/org/loc/locate_at", ORG, LOC)])
    couple = GoldAnnotation(PER1, PER2, "/per/per/couple")
    assert recovered(couple, "p", [inst("/per/per/couple", PER2, PER1)])


def test_score_relations_counts_precision_recall_and_f_half():
    pairs = PAIRS + [GoldPair("p", (PER1, OTHER2), "test", (GoldAnnotation(PER1, OTHER2, "/per/per/couple"),))]
    instances = [
        inst("/org/loc/locate_at", ORG, LOC, evidence=2),      # correct, a triple with 2 posts of evidence
        inst("/per/per/couple", OTHER2, PER1),                 # correct (symmetric, reversed)
        inst("/per/per/couple", PER1, OTHER2, evidence=3),     # correct again, the other direction
        inst("/per/per/couple", PER1, PER2, evidence=2),       # relation on a None pair: wrong
        inst("/org/loc/locate_at", LOC, ORG),                  # wrong direction
        inst("/per/per/couple", OTHER1, OTHER2),               # out-of-ontology pair: not scored
        inst("/per/per/couple", ORG, PER2),                    # unannotated
    ]
    s = score_relations(instances, pairs, TEST_RELS)
    assert (s["instances"], s["on_annotated_pairs"], s["correct"]) == (7, 5, 3)
    assert (s["relation_on_none_pair"], s["wrong_direction"], s["wrong_relation"]) == (1, 1, 0)
    assert (s["on_out_of_ontology_pairs"], s["on_unannotated_pairs"]) == (1, 1)
    assert s["triple_precision"] == 60.0
    assert (s["gold_relations"], s["gold_recovered"]) == (2, 2)
    assert s["micro"] == {"precision": 60.0, "recall": 100.0, "f1": 75.0, "f0_5": 65.2}
    assert s["multi_post"] == {"instances": 3, "on_annotated_pairs": 3, "correct": 2, "precision": 66.7}
    assert s["per_relation"]["/per/per/couple"] == {"predicted_on_annotated": 3, "correct": 2, "gold": 1, "recovered": 1}


def test_prf_and_f_half():
    assert prf(1, 4, 1, 2) == {"precision": 25.0, "recall": 50.0, "f1": 33.3, "f0_5": 27.8}
    assert prf(0, 0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "f0_5": 0.0}


def test_entity_coverage_is_the_relation_ceiling():
    graph = {"p": [(ORG, "acme"), ((10, 14), "paris")]}
    cov = entity_coverage(graph, PAIRS)
    assert (cov["gold_entities"], cov["gold_entities_matched"]) == (4, 1)  # the "other" pair's spans not counted
    assert (cov["gold_test_pairs"], cov["gold_test_pairs_both_matched"]) == (1, 0)
    assert entity_coverage(graph, PAIRS, "overlap")["gold_test_pairs_both_matched"] == 1
    named = [GoldPair("p", (ORG, LOC), "test", (GoldAnnotation(ORG, LOC, "/org/loc/locate_at", "acme", "paris"),),
                      ("acme", "paris")),
             GoldPair("p", (PER1, PER2), "none", (GoldAnnotation(PER1, PER2, None, "ann", "bob"),), ("ann", "bob"))]
    cov = entity_coverage(graph, named, "name")  # "paris" at (10, 14): the entity is in the post, whatever the span
    assert (cov["gold_entities_matched"], cov["gold_test_pairs_both_matched"]) == (2, 1)
    assert entity_coverage({"q": [(ORG, "acme"), (LOC, "paris")]}, named, "name")["gold_entities_matched"] == 0


# ------------------------------------------------------------------------------------ entities
def test_type_maps():
    assert [coarse_type(t) for t in ("Person", "Location", "Organization", "Event", "Product")] == \
        ["PER", "LOC", "ORG", "MISC", "MISC"]
    assert [spacy_coarse_type(t) for t in ("PERSON", "GPE", "LOC", "FAC", "ORG", "NORP", "EVENT", "WORK_OF_ART")] == \
        ["PER", "LOC", "LOC", "LOC", "ORG", "MISC", "MISC", "MISC"]
    # what plain spaCy is written as maps back to its own coarse type
    for label in ("PERSON", "GPE", "LOC", "FAC", "ORG", "NORP", "EVENT", "PRODUCT", "WORK_OF_ART"):
        assert coarse_type(spacy_ontology_type(label)) == spacy_coarse_type(label)


def test_twitter_gold_is_typed_as_written_and_agrees_with_build_example():
    from bench.entity_detection import build_example

    tweet = [("RT", "O"), ("@", "O"), ("Nashville", "B-LOC"), (":", "O"), ("Taylor", "B-PER"), ("Swift", "I-PER"),
             ("#", "O"), ("CMA", "B-ORG"), ("Awards", "I-MISC"), ("live", "O"), ("Grammys", "I-MISC")]
    text, offsets = written_offsets(tweet)
    assert text == build_example(tweet, "tweet").text == "RT @Nashville : Taylor Swift #CMA Awards live Grammys"
    gold = typed_gold_spans(tweet, offsets)
    assert gold == {(4, 13, "LOC"), (16, 28, "PER"), (30, 40, "ORG"), (46, 53, "MISC")}
    assert {(s, e) for s, e, _ in gold} == example_spans(build_example(tweet, "tweet"))
    assert text[30:40] == "CMA Awards" and text[46:53] == "Grammys"


def test_score_entities_typed_untyped_and_per_type():
    gold = {("p", 0, 5, "PER"), ("p", 10, 15, "LOC"), ("q", 0, 3, "ORG")}
    pred = {("p", 0, 5, "PER"), ("p", 10, 15, "ORG"), ("q", 4, 8, "MISC")}
    s = score_entities(pred, gold)
    assert (s["typed"]["tp"], s["typed"]["fp"], s["typed"]["fn"]) == (1, 2, 2)
    assert (s["untyped"]["tp"], s["untyped"]["fp"], s["untyped"]["fn"]) == (2, 1, 1)
    assert s["untyped"]["f1"] == 66.7 and s["typed"]["f1"] == 33.3
    assert s["per_type"]["PER"]["f1"] == 100.0
    assert (s["per_type"]["ORG"]["tp"], s["per_type"]["ORG"]["fp"], s["per_type"]["ORG"]["fn"]) == (0, 1, 1)
    assert s["per_type"]["LOC"]["fn"] == 1 and s["per_type"]["MISC"]["fp"] == 1


def test_a_gold_type_with_two_right_answers_takes_either():
    # a WNUT-16 music artist is a singer (PER) or a band (ORG): either type is a hit, a miss counts against both
    gold = {("p", 0, 5, "PER|ORG"), ("q", 0, 5, "PER|ORG"), ("r", 0, 5, "PER|ORG")}
    pred = {("p", 0, 5, "ORG"), ("q", 0, 5, "PER"), ("r", 0, 5, "LOC")}
    s = score_entities(pred, gold)
    assert (s["typed"]["tp"], s["typed"]["fp"], s["typed"]["fn"]) == (2, 1, 1)
    assert (s["per_type"]["ORG"]["tp"], s["per_type"]["ORG"]["fp"], s["per_type"]["ORG"]["fn"]) == (1, 0, 1)
    assert (s["per_type"]["PER"]["tp"], s["per_type"]["PER"]["fn"]) == (1, 1)
    assert WNUT_TO_COARSE["musicartist"] == "PER|ORG" and WNUT_TO_COARSE["facility"] == "LOC"


# --------------------------------------------------------------------------- the Cypher, on a real graph
@pytest.mark.neo4j
def test_cypher_maps_triples_back_to_posts_and_mention_spans(neo4j_driver):
    from bench.graph_quality import graph
    from kg_loader.load import load_extraction, writer_for
    from mmkg.ontology import Ontology
    from mmkg.records import Mention, Post, RelationMention, TypedMention

    onto = Ontology.from_dict({
        "entity_types": [{"name": "Person", "description": "a person"}],
        "relation_types": [{"name": "per_per_couple", "description": "a couple", "allowed": [["Person", "Person"]]}],
    })
    p1, p2 = Post("p1", "Ann loves Bob", "2018-01-01T00:00:00Z"), Post("p2", "Bob and Ann and Ann", "2018-01-01T00:00:00Z")

    def tm(post, s, e):
        return TypedMention(Mention(post.id, s, e, post.text[s:e], "test"), "Person", 0.9, "test", onto.label_set_id)

    ann1, bob1, bob2, ann2, ann3 = tm(p1, 0, 3), tm(p1, 10, 13), tm(p2, 0, 3), tm(p2, 8, 11), tm(p2, 16, 19)
    rels = [RelationMention("p1", ann1, bob1, "per_per_couple", 0.8, "test", onto.label_set_id),
            RelationMention("p2", ann2, bob2, "per_per_couple", 0.7, "test", onto.label_set_id)]
    writer = writer_for(neo4j_driver, onto)
    writer.ensure_schema()
    load_extraction(writer, [p1, p2], [ann1, bob1, bob2, ann2, ann3], rels, "run")
    got = sorted(graph.triple_instances(neo4j_driver, {"PER_PER_COUPLE": "/per/per/couple"}), key=lambda i: i.post_id)
    assert [(i.post_id, i.relation, i.evidence_count) for i in got] == [
        ("p1", "/per/per/couple", 2), ("p2", "/per/per/couple", 2)]
    assert (got[0].head_spans, got[0].tail_spans) == (((0, 3),), ((10, 13),))
    assert (got[1].head_spans, got[1].tail_spans) == (((8, 11), (16, 19)), ((0, 3),))  # Ann named twice in p2
    assert (got[0].head_name, got[0].tail_name) == ("ann", "bob")  # the graph's normalised names
    shape = graph.shape(neo4j_driver)
    assert (shape["posts"], shape["entities"], shape["mentions"], shape["triples"], shape["evidence"]) == (2, 2, 5, 1, 2)
    assert (shape["self_loops"], shape["both_direction_pairs"]) == (0, 0)
    assert sorted((m["post_id"], m["start"], m["name"]) for m in graph.mentions(neo4j_driver))[:2] == [
        ("p1", 0, "ann"), ("p1", 10, "bob")]


def _candidate(post, spans, raw, p, relation="located_in", ids=("h", "t")):
    (hs, ts) = spans
    return {"post_id": post, "relation": relation, "raw": raw, "p": p, "spans": tuple(sorted(spans)),
            "head_id": ids[0], "tail_id": ids[1], "head_name": ids[0], "tail_name": ids[1],
            "head_span": hs, "tail_span": ts}


def test_decision_rules_keep_the_better_reading_drop_self_loops_and_cap_per_post():
    from bench.graph_quality.decision_rules import apply_rule

    to_mnre = {"located_in": "/org/loc/locate_at", "peer": "/per/per/peer"}
    cands = [
        _candidate("p1", ((0, 3), (5, 8)), 5.0, 0.9),
        _candidate("p1", ((5, 8), (0, 3)), 4.5, 0.9, ids=("t", "h")),  # the other reading of the same pair
        _candidate("p1", ((10, 12), (14, 16)), 4.2, 0.3, ids=("a", "b")),
        _candidate("p1", ((20, 22), (24, 26)), 6.0, 0.9, ids=("s", "s")),  # one entity: a self-loop
        _candidate("p2", ((0, 2), (4, 6)), 3.0, 0.9, ids=("x", "y")),  # under the threshold
    ]
    kept = apply_rule(cands, 4.0, 0.0, None, 0.0, to_mnre)
    assert [(i.post_id, i.head_id, i.tail_id) for i in kept] == [("p1", "h", "t"), ("p1", "a", "b")]
    assert [i.head_id for i in apply_rule(cands, 4.0, 0.0, 1, 0.0, to_mnre)] == ["h"]  # the self-loop takes no place
    assert [i.head_id for i in apply_rule(cands, 4.0, 0.0, None, 0.5, to_mnre)] == ["h"]
    assert [i.head_id for i in apply_rule(cands, 4.0, 1.5, None, 0.0, to_mnre)] == []
    assert [i.head_id for i in apply_rule(cands, 4.0, -1.0, None, 0.0, to_mnre)] == ["h", "a", "x"]


def _relation_card(folder, trained):
    import json

    folder.mkdir(parents=True)
    (folder / "checkpoint.json").write_text(json.dumps({"labels": {"train": trained, "val": [], "test": []}}))
    return str(folder)


def test_a_zero_shot_part_never_measures_a_relation_checkpoint_that_trained_on_its_relations(tmp_path, monkeypatch):
    from bench.graph_quality import checkpoints
    from bench.graph_quality.run import ZERO_SHOT_PARTS

    assert "product" not in ZERO_SHOT_PARTS and {"test", "dev", "dev-wide", "val"} <= set(ZERO_SHOT_PARTS)
    scored = ["/org/loc/locate_at", "/per/per/couple"]
    clean = _relation_card(tmp_path / "clean", ["/per/per/parent"])
    seen = _relation_card(tmp_path / "seen", ["/per/per/parent", "/org/loc/locate_at"])
    assert checkpoints.relation_checkpoint_for(scored, clean) == clean
    with pytest.raises(ValueError, match="locate_at"):
        checkpoints.relation_checkpoint_for(scored, seen)
    assert checkpoints.relation_checkpoint_for(scored, seen, zero_shot=False) == seen  # the product part may
    monkeypatch.setattr("models.checkpoint.DEFAULT_RELATION_CHECKPOINT", tmp_path / "seen")
    with pytest.raises(ValueError, match="locate_at"):
        checkpoints.relation_checkpoint_for(scored)  # the shipped one is checked too


def test_the_shipped_relation_checkpoint_never_trained_on_the_headline_test_relations():
    from bench.graph_quality.checkpoints import trained_relations
    from models.checkpoint import DEFAULT_RELATION_CHECKPOINT, load_checkpoint

    card = load_checkpoint(DEFAULT_RELATION_CHECKPOINT).card
    assert card["data"]["name"] == "mnre-pipeline"
    assert not set(trained_relations(DEFAULT_RELATION_CHECKPOINT)) & set(card["labels"]["test"])


def test_the_decision_rule_is_the_best_f05_among_implemented_rules_at_least_as_precise_as_the_threshold_alone():
    from bench.graph_quality.decision_rules import choose_rule

    def rule(margin, gap, p, f, per_post=None, min_p=0.0, n=10):
        return {"margin": margin, "min_gap": gap, "per_post": per_post, "min_probability": min_p,
                "precision": p, "f0_5": f, "instances": n}

    today = rule(0.0, None, 47.7, 20.3)
    rules = [today, rule(-3.0, None, 26.4, 24.4),  # better F0.5, less precise: not chosen
             rule(-2.0, 1.5, 50.0, 25.8), rule(-2.0, 2.0, 49.1, 23.5),
             rule(-2.0, None, 55.0, 30.0, min_p=0.6),  # a probability minimum: measured, not implemented
             rule(-1.0, None, 60.0, 31.0, per_post=1)]  # a per-post cap: the same
    assert choose_rule(rules, today) == rules[2]
    assert choose_rule([today], today) == today


def test_the_shipped_relations_are_judged_against_their_mnre_counterparts():
    from bench.graph_quality.ontology_relations import judge
    from bench.graph_quality.scoring import GoldAnnotation

    def ann(head, tail, relation):
        return GoldAnnotation((0, 1), (2, 3), relation, head, tail)

    assert judge("located_in", "acme", "oslo", [ann("acme", "oslo", "/org/loc/locate_at")])
    assert not judge("located_in", "oslo", "acme", [ann("acme", "oslo", "/org/loc/locate_at")])  # wrong direction
    # place containment is stated the other way round in MNRE: the tail contains the head
    assert judge("located_in", "beijing", "china", [ann("china", "beijing", "/loc/loc/contain")])
    assert not judge("located_in", "china", "beijing", [ann("china", "beijing", "/loc/loc/contain")])
    assert judge("peer", "b", "a", [ann("a", "b", "/per/per/peer")])  # symmetric: either order
    assert not judge("member_of", "a", "b", [ann("a", "b", None)])  # a `None` pair
    assert not judge("created_by", "x", "y", [ann("x", "y", "/misc/misc/part_of")])  # no MNRE counterpart


def test_audit_summary_counts_what_the_post_states_beside_mnre_verdicts():
    """``bench.graph_quality.audit.summarise``: shares of read instances the post states, per MNRE group; an
    unread instance counts as an instance but not as read; MNRE's own precision from its verdicts alone."""
    from bench.graph_quality.audit import summarise

    def row(where, verdict, stated):
        return {"mnre_where": where, "mnre_verdict": verdict, "stated": stated}

    rows = [row("annotated", "correct", True), row("annotated", "correct", False),
            row("annotated", "none_pair", True), row("annotated", "none_pair", False),
            row("annotated", "wrong_direction", False), row("unannotated", None, True),
            row("other", None, False), row("unannotated", None, None)]
    s = summarise(rows)
    assert s["all instances"] == {"instances": 8, "read": 7, "stated": 3, "stated_pct": 42.9}
    assert s["on MNRE-annotated pairs"]["stated"] == 2 and s["on MNRE-annotated pairs"]["instances"] == 5
    assert s["... MNRE: correct"]["stated_pct"] == 50.0
    assert s["... MNRE: wrong (relation on a None pair, wrong relation or direction)"] == {
        "instances": 3, "read": 3, "stated": 1, "stated_pct": 33.3}
    assert s["on pairs MNRE did not annotate or annotated outside the ontology"] == {
        "instances": 3, "read": 2, "stated": 1, "stated_pct": 50.0}
    assert s["MNRE precision on annotated pairs"] == {"correct": 2, "instances": 5, "pct": 40.0}


def test_audit_agreement_between_two_readers_and_cohen_kappa():
    """``bench.graph_quality.audit.agreement``: raw agreement on the instances both read, and kappa against the
    agreement their own rates would give by chance (here p1 = p2 = 0.5, so chance is 0.5)."""
    from bench.graph_quality.audit import agreement

    rows = [{"stated": a, "stated_2": b} for a, b in
            [(True, True), (True, False), (False, False), (False, True), (True, True), (False, False), (None, True)]]
    a = agreement(rows)
    assert a["instances"] == 6 and a["agree"] == 4 and a["agree_pct"] == 66.7
    assert a["cohen_kappa"] == round((4 / 6 - 0.5) / 0.5, 3)
    assert a["stated_by_first_only"] == 1 and a["stated_by_second_only"] == 1
    assert agreement([{"stated": None, "stated_2": True}]) is None


def test_roc_auc_counts_ties_as_half_and_needs_both_classes():
    from bench.graph_quality.relation_signals import roc_auc

    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    # one positive above one of two negatives, tied with the other: (1 + 0.5) / 2
    assert roc_auc([0.7, 0.7, 0.3], [True, False, False]) == 0.75
    assert roc_auc([0.1, 0.2], [True, True]) is None


def test_the_pooling_probe_at_mean_pooling_decides_as_the_typer_does():
    """``type_pooling``'s own gap test, at ``mean`` pooling, is the shipped rule (``agree_on_types`` with
    ``min_gap``); pooled over n mentions it keeps more of a repeated name, never less."""
    import torch

    from bench.graph_quality.type_pooling import pooled_decisions
    from extraction.zero_shot import agree_on_types

    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(60, 5, generator=gen) * 1.5
    keys = [f"name{int(k)}" for k in torch.randint(0, 15, (60,), generator=gen)]
    scored = {"raw": raw, "keys": keys}
    for gap in (0.25, 0.5, 1.0):
        shipped = agree_on_types(keys, raw, 0.2, min_gap=gap)
        assert pooled_decisions(scored, 0.2, gap, "mean", None) == shipped
        pooled = pooled_decisions(scored, 0.2, gap, "n", None)
        assert all(p == s for p, s in zip(pooled, shipped) if s is not None)
        assert sum(p is not None for p in pooled) >= sum(s is not None for s in shipped)
    assert sum(p is not None for p in pooled_decisions(scored, 0.2, 1.0, "n", None)) > sum(
        s is not None for s in agree_on_types(keys, raw, 0.2, min_gap=1.0))


def test_the_margin_table_counts_a_name_mistyped_by_most_of_its_gold_spans_in_its_margin_bucket():
    """Three names: "oslo" a place by 3.0 (right), "owls" an event by 0.3 where gold says ORG on both its spans
    (mistyped), "x" by 0.6 on a span no gold holds (counted, never as mistyped)."""
    import torch

    from bench.graph_quality.type_margin import margin_table

    names = ["Person", "Location", "Organization", "Event", "Product"]
    raw = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0],   # oslo
                        [0.0, 0.0, 1.0, 1.3, 0.0], [0.0, 0.0, 1.0, 1.3, 0.0],   # owls, twice
                        [0.0, 0.0, 0.0, 0.0, 0.6]])  # x
    scored = {"raw": raw, "keys": ["oslo", "owls", "owls", "x"],
              "spans": [("p1", 0, 4), ("p1", 10, 14), ("p2", 0, 4), ("p3", 0, 1)],
              "gold": {("p1", 0, 4, "LOC"), ("p1", 10, 14, "ORG"), ("p2", 0, 4, "ORG|PER")}}
    table = margin_table(scored, names, 0.2, 0.25, review_gap=1.0)
    by_edge = {b["below"]: b for b in table["buckets"]}
    assert by_edge[0.5] == {"below": 0.5, "names": 1, "with_gold_span": 1, "mistyped": 1, "mistyped_share": 100.0}
    assert by_edge[0.75] == {"below": 0.75, "names": 1, "with_gold_span": 0, "mistyped": 0, "mistyped_share": None}
    assert by_edge[float("inf")]["names"] == 1 and by_edge[float("inf")]["mistyped"] == 0
    assert (table["under"]["names"], table["under"]["mistyped"], table["over"]["names"]) == (2, 1, 1)


def test_a_relation_description_filled_in_with_the_pair():
    from bench.graph_quality.relation_signals import filled_description

    assert (filled_description("the head person is a member, player or employee of the tail organization",
                               "Tom Brady", "Patriots") == "Tom Brady is a member, player or employee of Patriots")
    assert filled_description("no roles named", "A", "B") == "no roles named"


def test_the_readers_labels_retype_misc_gold_and_leave_out_what_they_disagree_on():
    """Agreed Event / Product -> EVENT / PRODUCT gold; agreed Other leaves the gold (a typed mention there is a
    false positive); a disagreement becomes an ignored region; a MISC mention nobody labelled is refused."""
    from bench.graph_quality.event_product import fine_gold, fine_scores

    gold = {("p", 0, 5, "MISC"), ("p", 6, 9, "MISC"), ("p", 10, 14, "MISC"), ("p", 15, 20, "PER"),
            ("q", 0, 4, "PER|ORG")}
    labels = {("p", 0, 5): ("Event", "Event"), ("p", 6, 9): ("Other", "Other"), ("p", 10, 14): ("Event", "Product")}
    fine, ignore, counts = fine_gold(gold, {("q", 5, 9)}, labels)
    assert fine == {("p", 0, 5, "EVENT"), ("p", 15, 20, "PER"), ("q", 0, 4, "PER|ORG")}
    assert ignore == {("q", 5, 9), ("p", 10, 14)}
    assert counts == {"Event": 1, "Other (out of the gold)": 1, "readers disagree (not scored)": 1}
    with pytest.raises(KeyError, match="no reader's label"):
        fine_gold({("r", 0, 3, "MISC")}, set(), labels)

    names = ["Person", "Location", "Organization", "Event", "Product"]
    scored = {"spans": [("p", 0, 5), ("p", 6, 9), ("p", 10, 14), ("p", 15, 20)]}
    result = fine_scores(scored, [4, 3, 3, 0], names, fine, ignore)  # Event as Product, Other as Event
    assert (result["typed_precision"], result["typed_recall"]) == (33.3, 33.3)  # 1 of 3 written (one ignored)
    assert result["typed_as"] == {"EVENT": {"PRODUCT": 1}, "PRODUCT": {}}
    assert result["per_type"]["EVENT"]["fp"] == 1 and result["per_type"]["EVENT"]["fn"] == 1
    fine.add(("q", 10, 15, "PRODUCT"))
    fine.add(("q", 20, 25, "EVENT"))
    scored["spans"].append(("q", 10, 15))  # detected, abstained; q 20-25 never detected
    result = fine_scores(scored, [4, 3, 3, 0, None], names, fine, ignore)
    assert result["typed_as"] == {"EVENT": {"PRODUCT": 1, "not detected": 1}, "PRODUCT": {"abstained": 1}}


def test_the_description_probe_keeps_the_shipped_descriptions_unless_a_variant_is_fair_and_better():
    from bench.graph_quality.event_product import choose

    def row(coarse, fine, f05):
        return {"coarse": {"typed_f1": coarse}, "fine": {"typed_f1": fine, "typed_f0_5": f05}}

    rows = {"a": {"shipped": row(70, 60, 50), "x": row(70, 61, 52), "y": row(69.9, 65, 60)},
            "b": {"shipped": row(40, 30, 20), "x": row(40, 30, 20), "y": row(41, 35, 30)}}
    assert choose(rows) == "x"  # y lowers coarse typed F1 on a
    rows["a"]["x"] = row(70, 60, 50)
    assert choose(rows) == "shipped"  # a tie goes to the shipped descriptions


def test_a_typers_operating_point_is_its_best_summed_coarse_f1_ties_to_the_higher_threshold():
    from bench.graph_quality.event_product import operating_point

    def at(*f1):
        return {s: {"coarse": {"typed_f1": f}} for s, f in zip(("a", "b"), f1)}

    assert operating_point({0.0: at(70, 40), 0.5: at(71, 40), 1.0: at(69, 41)}) == 0.5
    assert operating_point({0.0: at(70, 40), 0.5: at(69, 41)}) == 0.5


@pytest.mark.parametrize("module", ["run", "audit", "daily_runs", "decision_rules", "ontology_relations",
                                    "relation_signals", "type_rules", "type_pooling", "event_product", "type_margin"])
def test_every_entry_point_skips_without_the_research_data(module, tmp_path, monkeypatch, capsys):
    """The research data is not shipped: each entry point says what is missing and exits 0, writing nothing."""
    import importlib

    monkeypatch.setenv("MMKG_DATA", str(tmp_path / "no-data"))
    main = importlib.import_module(f"bench.graph_quality.{module}").main
    assert main(["--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SKIPPED: research data not found (") and "set MMKG_DATA" in out, out
    assert not (tmp_path / "out").exists()


def test_dependency_distance_counts_arcs_and_joins_sentences_at_their_roots():
    import spacy

    from bench.graph_quality.relation_signals import dependency_distance
    from extraction.detection import DEFAULT_SPACY_MODEL

    nlp = spacy.load(DEFAULT_SPACY_MODEL, exclude=["lemmatizer", "ner"])
    text = "Kofi Mensah lives in Accra. Tom Adeyemi trains in Durban."
    doc = nlp(text)

    def span(name):
        return text.index(name), text.index(name) + len(name)

    # Mensah <-nsubj- lives -prep-> in -pobj-> Accra
    assert dependency_distance(doc, span("Kofi Mensah"), span("Accra")) == (3, True)
    near, same = dependency_distance(doc, span("Kofi Mensah"), span("Durban"))
    assert not same and near > 3  # through the two sentences' roots
    assert dependency_distance(doc, span("Kofi Mensah"), (len(text), len(text) + 1)) == (len(doc), False)  # no token
