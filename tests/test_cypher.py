"""Cypher building and entity identity, as text (no server)."""

import pytest

from kg_loader import cypher
from mmkg.identity import entity_id, normalize_name


@pytest.mark.parametrize(
    "surface, expected",
    [
        ("#NBAAwards", "nba awards"),
        ("#LisbonFalcons", "lisbon falcons"),
        ("@martasilva9", "martasilva9"),
        ("iPhone", "iphone"),  # only tags are split
        ("  Marta   Silva ", "marta silva"),
        ("“Aurora Festival”!", "aurora festival"),
        ("ＭＡＲＴＡ", "marta"),  # full-width folds under NFKC
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # casefold, not lower
    ],
)
def test_normalize_name(surface, expected):
    assert normalize_name(surface) == expected


def test_entity_id_is_deterministic_and_type_scoped():
    assert entity_id("Marta Silva", "Person") == entity_id("marta  silva!", "Person")
    assert entity_id("Marta Silva", "Person") != entity_id("Marta Silva", "Organization")
    assert len(entity_id("x", "Person")) == 32


@pytest.mark.parametrize("bad", ["person", "Person`) DETACH DELETE n //", "Per son", "", "Entity", "Post", "A" * 65, 3, "Person\n"])
def test_label_refuses_unsafe_identifiers(bad):
    with pytest.raises(cypher.InvalidIdentifier):
        cypher.label(bad)


@pytest.mark.parametrize("bad", ["MemberOf", "member-of", "x`]->() DELETE r //", "", "1abc", "member_of\n"])
def test_relationship_type_refuses_unsafe_identifiers(bad):
    with pytest.raises(cypher.InvalidIdentifier):
        cypher.relationship_type(bad)


def test_identifiers_are_quoted():
    assert cypher.label("Person") == "`Person`"
    assert cypher.relationship_type("member_of") == "`MEMBER_OF`"
    assert ":`Person`" in cypher.upsert_mentions("Person")
    assert ":`MEMBER_OF`]" in cypher.upsert_relations("member_of")


def test_values_are_parameters_not_text():
    for query in (cypher.upsert_mentions("Person"), cypher.upsert_relations("peer"), cypher.UPSERT_POSTS):
        assert "UNWIND $rows AS row" in query
        assert "MERGE" in query and "CREATE (" not in query


def test_a_hashtag_mention_shares_the_identity_of_the_plain_name():
    from kg_loader.records import mention_rows
    from mmkg.records import Mention, TypedMention

    text = "Marta Silva joins Lisbon Falcons #LisbonFalcons"
    plain = Mention("p1", 18, 32, "Lisbon Falcons", "spacy")
    tag = Mention("p1", 34, 47, "LisbonFalcons", "spacy")  # span without the '#', as the detector gives it
    assert text[tag.start : tag.end] == tag.text
    rows = mention_rows([TypedMention(m, "Organization", 0.9, "v", "ls") for m in (plain, tag)], "run", {"p1": text})
    assert rows[0].entity_id == rows[1].entity_id and rows[1].name == "lisbon falcons"
    assert rows[1].surface == "LisbonFalcons"
