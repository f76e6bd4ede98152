"""The label set file: valid files load and hash stably; invalid ones are refused with a reason."""

from pathlib import Path

import pytest
import yaml

from mmkg.ontology import Ontology, OntologyError, load_ontology

DEFAULT = Path(__file__).resolve().parent.parent / "ontology" / "ontology.yaml"


def _data():
    return yaml.safe_load(DEFAULT.read_text())


def test_default_ontology_loads():
    onto = load_ontology(DEFAULT)
    assert {e.name for e in onto.entity_types} >= {"Person", "Location", "Organization"}
    assert onto.relations_for("Person", "Organization")[0].name == "member_of"
    assert onto.relation_types[0].neo4j_type == "MEMBER_OF"


def test_a_relation_can_be_marked_symmetric_and_that_is_part_of_the_label_set():
    onto = load_ontology(DEFAULT)
    assert {r.name for r in onto.relation_types if r.symmetric} == {"peer"}
    data = _data()
    data["relation_types"].append({"name": "sibling_of", "description": "x", "allowed": [["Person", "Person"]]})
    plain = Ontology.from_dict(data)
    data["relation_types"][-1]["symmetric"] = True
    assert Ontology.from_dict(data).relation_types[-1].symmetric and not plain.relation_types[-1].symmetric
    assert Ontology.from_dict(data).label_set_id != plain.label_set_id


def test_label_set_id_changes_with_content_only():
    a, b = Ontology.from_dict(_data()), Ontology.from_dict(_data())
    assert a.label_set_id == b.label_set_id
    changed = _data()
    changed["entity_types"].append({"name": "Food", "description": "a dish or ingredient"})
    assert Ontology.from_dict(changed).label_set_id != a.label_set_id


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["entity_types"].append({"name": "person", "description": "x"}), "PascalCase"),
        (lambda d: d["entity_types"].append({"name": "Evil`) DELETE n", "description": "x"}), "Neo4j label"),
        (lambda d: d["entity_types"].append({"name": "Post", "description": "x"}), "reserved"),
        (lambda d: d["entity_types"].append({"name": "Person", "description": "x"}), "duplicate"),
        (lambda d: d["entity_types"].append({"name": "Food"}), "description"),
        (lambda d: d["relation_types"].append({"name": "Likes", "description": "x", "allowed": [["Person", "Person"]]}), "snake_case"),
        (lambda d: d["relation_types"].append({"name": "likes", "description": "x", "allowed": [["Person", "Food"]]}), "unknown entity types"),
        (lambda d: d["relation_types"].append({"name": "likes", "description": "x"}), "allowed"),
        (lambda d: d.update(entity_types=[]), "non-empty"),
        (lambda d: d.update(colour="blue"), "unknown keys"),
        (lambda d: d["relation_types"].append({"name": "likes", "description": "x", "allowed": [["Person", "Person"]],
                                               "symmetric": "yes"}), "true or false"),
        (lambda d: d["relation_types"].append({"name": "knows_of", "description": "x", "symmetric": True,
                                               "allowed": [["Person", "Location"]]}), "both ways"),
    ],
)
def test_invalid_ontologies_are_refused_with_a_reason(mutate, message):
    data = _data()
    mutate(data)
    with pytest.raises(OntologyError, match=message):
        Ontology.from_dict(data)


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(OntologyError, match="cannot read"):
        load_ontology(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("entity_types: [unclosed")
    with pytest.raises(OntologyError, match="not valid YAML"):
        load_ontology(bad)


@pytest.mark.parametrize(
    "mutate, message",
    [
        # ``$`` matched before a trailing newline; a label must be the whole string.
        (lambda d: d["entity_types"].append({"name": "Food\n", "description": "x"}), "Neo4j label"),
        (lambda d: d["relation_types"].append({"name": "likes\n", "description": "x", "allowed": [["Person", "Person"]]}),
         "relationship type"),
        # The loader's own relationship types.
        (lambda d: d["relation_types"].append({"name": "mentions", "description": "x", "allowed": [["Person", "Person"]]}),
         "reserved by the graph schema .*MENTIONS"),
        (lambda d: d["relation_types"].append({"name": "has_image", "description": "x", "allowed": [["Person", "Person"]]}),
         "reserved by the graph schema .*HAS_IMAGE"),
    ],
)
def test_names_that_would_clash_in_the_graph_are_refused(mutate, message):
    data = _data()
    mutate(data)
    with pytest.raises(OntologyError, match=message):
        Ontology.from_dict(data)


def test_reserved_relations_cover_what_the_loader_writes():
    import re

    from kg_loader import cypher
    from mmkg.ontology import RESERVED_RELATIONS

    source = Path(cypher.__file__).read_text()
    used = set(re.findall(r"\[(?:\w+)?:([A-Z_]+)", source))
    assert used and {r.upper() for r in RESERVED_RELATIONS} >= used


def _with_sports_team(parent="Organization"):
    data = _data()
    data["entity_types"].append({"name": "SportsTeam", "description": "a sports team or club", "parent": parent})
    return data


def test_a_type_may_narrow_another_and_inherits_its_relations():
    onto = Ontology.from_dict(_with_sports_team())
    assert onto.entity_type("SportsTeam").parent == "Organization"
    assert onto.lineage("SportsTeam") == ("SportsTeam", "Organization") and onto.lineage("Person") == ("Person",)
    names = [e.name for e in onto.entity_types]
    assert onto.parent_indices()[names.index("SportsTeam")] == names.index("Organization")
    # member_of is allowed (Person, Organization): so (Person, SportsTeam) too, but not the other way round
    assert "member_of" in {r.name for r in onto.relations_for("Person", "SportsTeam")}
    assert not onto.relations_for("SportsTeam", "Person")
    # the parent is part of the label set; an ontology without parents keeps its id
    plain = _data()
    plain["entity_types"].append({"name": "SportsTeam", "description": "a sports team or club"})
    assert Ontology.from_dict(plain).label_set_id != onto.label_set_id


@pytest.mark.parametrize("parent, message", [
    ("Club", "not a listed entity type"), ("SportsTeam", "cycle"), (3, "must be a type name")])
def test_a_bad_parent_is_refused_with_its_reason(parent, message):
    with pytest.raises(OntologyError, match=message):
        Ontology.from_dict(_with_sports_team(parent))
