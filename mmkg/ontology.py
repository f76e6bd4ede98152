"""The label set: entity types and relation types that users edit, versioned by content hash.

An ontology file is YAML. Names become Neo4j labels and relationship types, so they are
validated strictly here, before any work starts: nothing a user writes in a label set can
reach Cypher except through these checks (see ``kg_loader.cypher`` for the second gate).

    version: 1
    entity_types:
      - name: Person
        description: a real or fictional human being
      - name: Organization
        description: a company, team or institution
      - name: SportsTeam
        description: a sports team or club
        parent: Organization   # optional: a narrower kind of a listed type (see EntityType.parent)
    relation_types:
      - name: place_of_birth
        description: the head person was born in the tail location
        allowed: [[Person, Location]]
      - name: peer
        description: the two people are peers
        allowed: [[Person, Person]]
        symmetric: true      # optional: holds both ways, written once per pair
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from mmkg.records import OTHER_TYPE

# Whole-string patterns, used with ``fullmatch`` (``$`` would accept a trailing newline).
ENTITY_TYPE_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
RELATION_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Labels the graph schema uses itself; an entity type may not take them.
RESERVED_LABELS = frozenset({"Entity", "Post", "Image", "IngestRun", "LabelSet", OTHER_TYPE})
#: Relationship types the loader writes itself (``kg_loader.cypher``: ``(:Post)-[:MENTIONS]->(:Entity)``,
#: ``(:Post)-[:HAS_IMAGE]->(:Image)``); a relation named so would be mixed up with them (its type is
#: the upper-cased name) and retracted with them.
RESERVED_RELATIONS = frozenset({"mentions", "has_image"})


class OntologyError(ValueError):
    """The ontology file is invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class EntityType:
    name: str
    description: str
    #: A narrower kind of another listed type (``SportsTeam`` of ``Organization``): a mention typed as the
    #: parent takes the child where the child's own score also clears the threshold (the narrowest type
    #: that fits wins), and a relation allowed for the parent is allowed for the child.
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class RelationType:
    name: str
    description: str
    allowed: tuple[tuple[str, str], ...]  # allowed (head type, tail type) pairs
    #: Holds both ways (``peer``): written once per entity pair, in canonical order; query it undirected.
    symmetric: bool = False

    @property
    def neo4j_type(self) -> str:
        """Relationship type in the graph: ``place_of_birth`` -> ``PLACE_OF_BIRTH``."""
        return self.name.upper()


@dataclass(frozen=True, slots=True)
class Ontology:
    version: int
    entity_types: tuple[EntityType, ...]
    relation_types: tuple[RelationType, ...]

    @property
    def label_set_id(self) -> str:
        """Content hash of the label set: changes whenever a name, description or pair changes."""
        canonical = json.dumps(
            {
                "version": self.version,
                "entity_types": [[e.name, e.description] + ([e.parent] if e.parent else []) for e in self.entity_types],
                "relation_types": [
                    [r.name, r.description, [list(p) for p in r.allowed]] + ([True] if r.symmetric else [])
                    for r in self.relation_types
                ],
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def entity_type(self, name: str) -> EntityType:
        for e in self.entity_types:
            if e.name == name:
                return e
        raise KeyError(name)

    def lineage(self, name: str) -> tuple[str, ...]:
        """``name`` and the types it is a narrower kind of, nearest first: ``SportsTeam, Organization``."""
        out, parents = [name], {e.name: e.parent for e in self.entity_types}
        while parents.get(out[-1]):
            out.append(parents[out[-1]])
        return tuple(out)

    def parent_indices(self) -> list[int | None]:
        """Each entity type's parent as an index into ``entity_types`` (None: no parent)."""
        index = {e.name: i for i, e in enumerate(self.entity_types)}
        return [index[e.parent] if e.parent else None for e in self.entity_types]

    def relations_for(self, head_type: str, tail_type: str) -> tuple[RelationType, ...]:
        """Relation types allowed between a head of ``head_type`` and a tail of ``tail_type`` (or of the
        types they are narrower kinds of)."""
        pairs = {(h, t) for h in self.lineage(head_type) for t in self.lineage(tail_type)}
        return tuple(r for r in self.relation_types if pairs & set(r.allowed))

    @classmethod
    def from_dict(cls, data: object, where: str = "ontology") -> "Ontology":
        if not isinstance(data, dict):
            raise OntologyError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
        unknown = set(data) - {"version", "entity_types", "relation_types"}
        if unknown:
            raise OntologyError(f"{where}: unknown keys {sorted(unknown)}")
        version = data.get("version", 1)
        if not isinstance(version, int) or version < 1:
            raise OntologyError(f"{where}: 'version' must be a positive integer")

        entity_types: list[EntityType] = []
        raw_entities = data.get("entity_types")
        if not isinstance(raw_entities, list) or not raw_entities:
            raise OntologyError(f"{where}: 'entity_types' must be a non-empty list")
        for i, item in enumerate(raw_entities):
            name, description = _name_and_description(item, f"{where}: entity_types[{i}]")
            if not ENTITY_TYPE_NAME.fullmatch(name):
                raise OntologyError(
                    f"{where}: entity_types[{i}] name {name!r} must match {ENTITY_TYPE_NAME.pattern} "
                    "(PascalCase letters and digits: it becomes a Neo4j label)"
                )
            if name in RESERVED_LABELS:
                raise OntologyError(f"{where}: entity_types[{i}] name {name!r} is reserved by the graph schema")
            parent = item.get("parent")
            if parent is not None and (not isinstance(parent, str) or not parent):
                raise OntologyError(f"{where}: entity_types[{i}] ({name}): 'parent' must be a type name")
            entity_types.append(EntityType(name, description, parent))
        _refuse_duplicates([e.name for e in entity_types], f"{where}: entity_types")
        known = {e.name for e in entity_types}
        parents = {e.name: e.parent for e in entity_types}
        for e in entity_types:
            if e.parent is not None and e.parent not in known:
                raise OntologyError(f"{where}: entity type {e.name!r}: parent {e.parent!r} is not a listed entity type")
            seen, at = {e.name}, e.parent
            while at is not None:
                if at in seen:
                    raise OntologyError(f"{where}: entity type {e.name!r}: its parents form a cycle")
                seen.add(at)
                at = parents[at]

        relation_types: list[RelationType] = []
        raw_relations = data.get("relation_types", []) or []
        if not isinstance(raw_relations, list):
            raise OntologyError(f"{where}: 'relation_types' must be a list")
        for i, item in enumerate(raw_relations):
            here = f"{where}: relation_types[{i}]"
            name, description = _name_and_description(item, here)
            if not RELATION_NAME.fullmatch(name):
                raise OntologyError(
                    f"{here} name {name!r} must match {RELATION_NAME.pattern} "
                    "(snake_case: it becomes a Neo4j relationship type)"
                )
            if name in RESERVED_RELATIONS:
                raise OntologyError(
                    f"{here} name {name!r} is reserved by the graph schema (the loader writes "
                    f"{name.upper()} relationships itself); choose another name"
                )
            allowed_raw = item.get("allowed")
            if not isinstance(allowed_raw, list) or not allowed_raw:
                raise OntologyError(f"{here} ({name}): 'allowed' must be a non-empty list of [head, tail] pairs")
            pairs: list[tuple[str, str]] = []
            for pair in allowed_raw:
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                    raise OntologyError(f"{here} ({name}): each allowed pair must be [head_type, tail_type]")
                missing = [p for p in pair if p not in known]
                if missing:
                    raise OntologyError(f"{here} ({name}): allowed pair uses unknown entity types {missing}")
                pairs.append((pair[0], pair[1]))
            symmetric = item.get("symmetric", False)
            if not isinstance(symmetric, bool):
                raise OntologyError(f"{here} ({name}): 'symmetric' must be true or false, got {symmetric!r}")
            if symmetric and any((t, h) not in pairs for h, t in pairs):
                raise OntologyError(f"{here} ({name}): a symmetric relation must allow each pair both ways "
                                    f"(allowed {[list(p) for p in pairs]})")
            relation_types.append(RelationType(name, description, tuple(pairs), symmetric))
        _refuse_duplicates([r.name for r in relation_types], f"{where}: relation_types")
        return cls(version, tuple(entity_types), tuple(relation_types))


def load_ontology(path: str | Path) -> Ontology:
    """Read and validate an ontology file; raises OntologyError with a clear message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OntologyError(f"{path}: cannot read ontology file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise OntologyError(f"{path}: ontology file is not UTF-8 ({exc.reason})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OntologyError(f"{path}: not valid YAML: {exc}") from exc
    return Ontology.from_dict(data, where=str(path))


def _name_and_description(item: object, where: str) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise OntologyError(f"{where}: expected a mapping with 'name' and 'description'")
    name, description = item.get("name"), item.get("description")
    if not isinstance(name, str) or not name:
        raise OntologyError(f"{where}: 'name' must be a non-empty string")
    if not isinstance(description, str) or not description.strip():
        raise OntologyError(f"{where} ({name}): 'description' must be a non-empty string")
    return name, description.strip()


def _refuse_duplicates(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise OntologyError(f"{where}: duplicate name {n!r}")
        seen.add(n)
