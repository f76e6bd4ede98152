"""Entity resolution a person reviews: candidate merges, durable decisions, idempotent merges.

Entity identity (``mmkg.identity``) never guesses: "aurora fest" and "aurora festival", or the handle
``@kofi_runs`` and "Kofi Mensah", are different entities. This module finds such variants in the loaded
graph and *proposes* them; nothing is merged until someone accepts a pair.

1. ``propose_candidates`` reads the entities, blocks them on cheap name keys, scores each blocked pair
   from its name evidence (``name_evidence``) and its context (posts that mention both, shared relation
   neighbours), and writes every pair worth a look as one
   ``(a:Entity)-[:SAME_AS_CANDIDATE {score, reasons, ..., status: 'proposed'}]->(b:Entity)`` with
   ``a.id < b.id``. Same graph, same candidates: the run is deterministic and replaces the previous
   proposals. A pair of two entity types is proposed only when their normalised names are equal once
   spaces and punctuation are dropped (``same_name``), or when one is a tag/handle spelling the other's full
   name and a post names both (``@martasilva9`` typed Organization beside "Marta Silva"; ``cross_type_evidence``),
   and is marked ``cross_type``. Equal names that two
   runs typed differently are folded by the load itself (``kg_loader.type_agreement``); what reaches review
   is a homonym a run saw, a person's earlier decision, or names equal only once compacted (``#byteconf`` /
   "byte conf"). Its ``type_evidence`` says how many mentions each type holds and their mean score, and
   ``suggested_type`` the type ``preferred_type`` picks (more mentions, then the higher mean score).
2. ``accept`` / ``reject`` store the decision as a ``(:MergeDecision {id: 'a|b'})`` node, which lives
   apart from the entities (a load may delete and recreate an entity; the decision stays). A rejected
   pair (or any pair whose two sides contain a rejected pair after merges) is never proposed again.
3. ``apply_accepted_merges`` makes each accepted pair one entity: the canonical one (chosen when the pair
   was accepted: more mentions, then more relation evidence, then the smaller id) takes the other's
   MENTIONS and relation triples (evidence of a triple both had is combined per post, best score kept,
   lists in post-id order; a triple that would become a self-loop is dropped), its aliases, and its id
   in ``merged_ids``; the merged-away node is deleted. A later load that writes the old id again
   recreates that node; the next ``apply_accepted_merges`` moves it onto the canonical entity again, so
   load + apply gives the same graph every time. Applying twice is applying once.

All Cypher of this module is here. Labels and relationship types that must be interpolated pass
``kg_loader.cypher.label`` / ``relationship_type`` (strict pattern, backticks) first.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from typing import Any

from kg_loader import cypher
from mmkg.identity import compact, entity_id, name_tokens, normalize_name, spells

log = logging.getLogger(__name__)

#: Recorded on every candidate and decision: which scoring produced it.
RESOLVER_VERSION = "mmkg.resolution/v1"
CANDIDATE_TYPE = "SAME_AS_CANDIDATE"
#: A candidate is written when its score reaches this (``propose_candidates(min_score=...)``).
DEFAULT_MIN_SCORE = 0.5
#: A blocking key shared by more entities than this is skipped (a very common token says nothing).
DEFAULT_MAX_BLOCK = 200
_ENTITY_ID = re.compile(r"^[0-9a-f]{8,32}$")

#: Name signals and what each is worth (the pair's ``name_similarity`` is the best one that fired).
#: Below STRONG_NAME a pair also needs context: a post that mentions both, or a shared neighbour.
NAME_SIGNALS: dict[str, float] = {
    "same_name": 1.0,  # equal once spaces/punctuation are dropped: "#aurorafest" ~ "aurora fest"
    "token_prefix": 0.9,  # same words, one shortened: "aurora fest" ~ "aurora festival"
    "tag_contains_name": 0.9,  # a one-word tag/handle contains the full name: "@martasilva9" ~ "marta silva"
    "handle_initials": 0.8,  # "@kmensah" / "@kofim" ~ "kofi mensah"
    "token_containment": 0.7,  # all words of one in the other: "marta" ~ "marta silva"
    "acronym": 0.7,  # "#RRFC" ~ "riverside rovers"
    "tag_shares_token": 0.6,  # a one-word tag/handle holds a word of the name: "@kofi_runs" ~ "kofi mensah"
}
STRONG_NAME = 0.8
#: ``edit_similarity`` (difflib's ratio of the two names) counts from here, for names of 6+ letters and
#: as many words (a typo; an extra word is ``token_containment``).
EDIT_MIN_RATIO = 0.88
#: score = NAME_WEIGHT * name_similarity + (1 - NAME_WEIGHT) * context, context in [0, 1].
NAME_WEIGHT = 0.75


class ResolutionError(ValueError):
    """A reference or decision that cannot be carried out; the message says why."""


# -- pure part: names, blocking, scoring ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntityInfo:
    """What candidate generation knows of one entity."""

    id: str
    name: str
    type: str
    aliases: tuple[str, ...] = ()
    mentions: int = 0
    #: Written as a ``#tag`` or ``@handle`` somewhere (alias or the post text before a mention).
    tag: bool = False
    #: Mean typing score of its mentions (``MENTIONS.score``): a cross-type pair's evidence.
    mean_score: float = 0.0
    #: Derived once (pairs compare them many times): the name's words, and the name and aliases compacted.
    tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)
    compacts: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", name_tokens(self.name))
        forms = {self.name, *(normalize_name(a) for a in self.aliases if a.strip())}
        object.__setattr__(self, "compacts", frozenset(c for c in (compact(f) for f in forms) if c))


def _aligned(short: Sequence[str], long: Sequence[str]) -> tuple[bool, bool]:
    """Do all words of ``short`` match words of ``long`` in order (equal, or one a 3+ letter prefix of
    the other)? And did any match by prefix only?"""
    i, prefix = 0, False
    for s in short:
        while i < len(long):
            word = long[i]
            i += 1
            if word == s:
                break
            if min(len(word), len(s)) >= 3 and (word.startswith(s) or s.startswith(word)):
                prefix = True
                break
        else:
            return False, prefix
    return True, prefix


def name_evidence(a: EntityInfo, b: EntityInfo) -> tuple[float, dict[str, float]]:
    """``(name_similarity, {signal: value})`` for two entities' names; ``(0, {})`` when nothing fired.

    Two names that both carry numbers and the numbers differ ("iphone 14" / "iphone 15") never match.
    """
    ta, tb = a.tokens, b.tokens
    if not ta or not tb:
        return 0.0, {}
    na, nb = {t for t in ta if t.isdigit()}, {t for t in tb if t.isdigit()}
    if na and nb and na != nb:
        return 0.0, {}
    if a.compacts & b.compacts:  # the strongest signal: the weaker ones would only repeat it
        return NAME_SIGNALS["same_name"], {"same_name": NAME_SIGNALS["same_name"]}
    signals: dict[str, float] = {}
    short, long = sorted((ta, tb), key=lambda t: (len(t), t))
    matched, by_prefix = _aligned(short, long)
    if matched and max(len(w) for w in short) >= 3:
        if len(short) == len(long) and len(short) >= 2 and by_prefix:
            signals["token_prefix"] = NAME_SIGNALS["token_prefix"]
        elif len(short) < len(long) or by_prefix:
            signals["token_containment"] = NAME_SIGNALS["token_containment"]
    one_word = [e for e in (a, b) if " " not in e.name]
    for tag in one_word:
        other = b if tag is a else a
        if " " not in other.name:
            continue
        tag_c, words = compact(tag.name), other.tokens
        if spells(tag.name, other.name):  # equal compacted names returned ``same_name`` above
            signals["tag_contains_name"] = NAME_SIGNALS["tag_contains_name"]
        letters = [w for w in words if not w.isdigit()]
        if len(letters) >= 2 and tag_c in (letters[0][0] + letters[-1], letters[0] + letters[-1][0]):
            signals["handle_initials"] = NAME_SIGNALS["handle_initials"]
        initials = "".join(w[0] for w in letters)
        short_tag = 2 <= len(tag_c) <= 6 and len(tag_c) - len(initials) <= 2
        if len(letters) >= 2 and short_tag and tag_c.startswith(initials):
            signals["acronym"] = NAME_SIGNALS["acronym"]
        if tag.tag and any(len(w) >= 3 and w in tag_c for w in letters) and "tag_contains_name" not in signals:
            signals["tag_shares_token"] = NAME_SIGNALS["tag_shares_token"]
    if len(ta) == len(tb) and min(len(compact(a.name)), len(compact(b.name))) >= 6:  # typos, not extra words
        ratio = difflib.SequenceMatcher(None, a.name, b.name, autojunk=False).ratio()
        if ratio >= EDIT_MIN_RATIO:
            signals["edit_similarity"] = round(ratio, 4)
    return (max(signals.values()) if signals else 0.0), signals


def blocking_keys(e: EntityInfo) -> set[str]:
    """Cheap keys; only entities sharing one are compared. Keys of one type carry the type; the
    compact-name key and the spelled-name key do not (the evidence that may join two types,
    ``cross_type_evidence``): a one-word tag/handle and a name of two or more words that start alike
    (``@martasilva9`` / "marta silva")."""
    keys = {f"name\x1f{c}" for c in e.compacts}
    spelled = compact(e.name)
    if len(spelled) >= 6 and ((e.tag and " " not in e.name) or len(e.tokens) >= 2):
        keys.add(f"spelled\x1f{spelled[:4]}")
    scope = f"{e.type}\x1f"
    words = e.tokens
    keys.update(f"{scope}w\x1f{w[:3]}" for w in words if len(w) >= 3 and not w.isdigit())
    c = compact(e.name)
    if len(c) >= 3:
        keys.add(f"{scope}w\x1f{c[:3]}")
    if " " not in e.name and len(c) >= 4:
        keys.add(f"{scope}w\x1f{c[1:4]}")  # a handle of initial + surname: "kmensah" ~ "mensah"
    letters = [w for w in words if not w.isdigit()]
    if len(letters) >= 2:
        keys.add(f"{scope}i\x1f{''.join(w[0] for w in letters)}")
    if " " not in e.name and 2 <= len(c) <= 6:
        keys.update(f"{scope}i\x1f{c[:k]}" for k in range(2, len(c) + 1))
    return keys


def blocked_pairs(entities: Iterable[EntityInfo], max_block: int = DEFAULT_MAX_BLOCK) -> list[tuple[str, str]]:
    """Pairs of entity ids (smaller first, sorted) that share a blocking key."""
    blocks: dict[str, set[str]] = defaultdict(set)
    for e in entities:
        for key in blocking_keys(e):
            blocks[key].add(e.id)
    pairs: set[tuple[str, str]] = set()
    for key, ids in blocks.items():
        if len(ids) > max_block and not key.startswith("name\x1f"):
            log.info("blocking key %r shared by %d entities: skipped", key, len(ids))
            continue
        pairs.update(combinations(sorted(ids), 2))
    return sorted(pairs)


@dataclass(frozen=True, slots=True)
class Context:
    """Where two entities are seen: the posts that mention each, their relation neighbours."""

    posts: frozenset[str] = frozenset()
    neighbours: frozenset[str] = frozenset()  # "TYPE|other entity id"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A proposed merge of entities ``a_id < b_id``, with the evidence for it."""

    a_id: str
    b_id: str
    a_name: str
    b_name: str
    a_type: str
    b_type: str
    score: float
    name_similarity: float
    reasons: tuple[str, ...]
    edit_similarity: float
    shared_posts: int
    shared_post_sample: tuple[str, ...]
    shared_neighbours: int
    neighbour_jaccard: float
    cross_type: bool
    #: Cross-type pairs: "Type: N mentions, mean score S" per side, and the type with more evidence.
    type_evidence: tuple[str, ...] = ()
    suggested_type: str | None = None

    @property
    def pair_id(self) -> str:
        return pair_id(self.a_id, self.b_id)

    def edge_properties(self) -> dict[str, Any]:
        """Properties of the SAME_AS_CANDIDATE edge (no ``post_ids``: that name means relation evidence
        to the loader's retraction)."""
        return {
            "pair_id": self.pair_id, "score": self.score, "name_similarity": self.name_similarity,
            "reasons": list(self.reasons), "edit_similarity": self.edit_similarity,
            "shared_posts": self.shared_posts, "shared_post_sample": list(self.shared_post_sample),
            "shared_neighbours": self.shared_neighbours, "neighbour_jaccard": self.neighbour_jaccard,
            "cross_type": self.cross_type, "status": "proposed", "resolver": RESOLVER_VERSION,
        } | ({"type_evidence": list(self.type_evidence), "suggested_type": self.suggested_type}
             if self.cross_type else {})  # fmt: skip


def pair_id(a: str, b: str) -> str:
    """The one key of an unordered pair of entity ids."""
    x, y = sorted((a, b))
    return f"{x}|{y}"


def cross_type_evidence(signals: Mapping[str, float], shared_posts: Iterable[str]) -> bool:
    """Whether two entities of two types may be proposed as one: their names are equal once compacted
    (``same_name``), or one is a tag/handle that spells the other's full name and a post names both
    (``tag_contains_name`` + co-mentioned: ``@martasilva9`` typed Organization beside "Marta Silva"). Anything
    weaker across types is two entities."""
    return "same_name" in signals or ("tag_contains_name" in signals and any(True for _ in shared_posts))


def score_pair(
    a: EntityInfo, b: EntityInfo, ca: Context, cb: Context, min_score: float = DEFAULT_MIN_SCORE,
) -> Candidate | None:
    """The candidate for two entities, or None when the evidence is not enough (see module docstring)."""
    if a.id > b.id:
        a, b, ca, cb = b, a, cb, ca
    sim, signals = name_evidence(a, b)
    if not signals:
        return None
    cross_type = a.type != b.type
    shared = ca.posts & cb.posts
    if cross_type and not cross_type_evidence(signals, shared):
        return None
    co_ratio = len(shared) / min(len(ca.posts), len(cb.posts)) if ca.posts and cb.posts else 0.0
    na = {n for n in ca.neighbours if n.split("|", 1)[1] != b.id}
    nb = {n for n in cb.neighbours if n.split("|", 1)[1] != a.id}
    common = na & nb
    jaccard = len(common) / len(na | nb) if common else 0.0
    context = max(co_ratio, jaccard)
    if sim < STRONG_NAME and context == 0:
        return None
    score = round(NAME_WEIGHT * sim + (1 - NAME_WEIGHT) * context, 4)
    if score < min_score:
        return None
    reasons = [s for s in (*NAME_SIGNALS, "edit_similarity") if s in signals]
    if shared:
        reasons.append("co_mentioned")
    if common:
        reasons.append("shared_neighbours")
    reasons.append("cross_type" if cross_type else "same_type")
    evidence, suggested = type_evidence(a, b) if cross_type else ((), None)
    return Candidate(
        a_id=a.id, b_id=b.id, a_name=a.name, b_name=b.name, a_type=a.type, b_type=b.type, score=score,
        name_similarity=round(sim, 4), reasons=tuple(reasons), edit_similarity=signals.get("edit_similarity", 0.0),
        shared_posts=len(shared), shared_post_sample=tuple(sorted(shared)[:5]), shared_neighbours=len(common),
        neighbour_jaccard=round(jaccard, 4), cross_type=cross_type, type_evidence=evidence, suggested_type=suggested,
    )  # fmt: skip


def preferred_type(evidence: Mapping[str, tuple[int, float]]) -> str:
    """Of several types one name was given (type -> (mentions, mean typing score)), the one with more
    mentions, then the higher mean score, then the smaller name. A cross-type candidate's
    ``suggested_type``, and the type ``kg_loader.type_agreement`` folds a name's entities into."""
    return min(evidence, key=lambda t: (-evidence[t][0], -round(evidence[t][1], 4), t))


def type_evidence(a: EntityInfo, b: EntityInfo) -> tuple[tuple[str, ...], str]:
    """What each side of a cross-type pair holds ("Organization: 3 mentions, mean score 0.412"), and the
    type ``preferred_type`` picks (a suggestion, not a merge)."""
    lines = tuple(f"{e.type}: {e.mentions} mention{'s' * (e.mentions != 1)}, mean score {e.mean_score:.3f}"
                  for e in (a, b))
    return lines, preferred_type({e.type: (e.mentions, e.mean_score) for e in (a, b)})


def find_candidates(
    entities: Sequence[EntityInfo], contexts: Mapping[str, Context], min_score: float = DEFAULT_MIN_SCORE,
    max_block: int = DEFAULT_MAX_BLOCK, excluded: Iterable[str] = (),
) -> list[Candidate]:
    """Candidates over ``entities``, best first (ties by ids). ``excluded``: pair ids never to propose."""
    by_id = {e.id: e for e in entities}
    skip = set(excluded)
    out = []
    for a, b in blocked_pairs(entities, max_block):
        if pair_id(a, b) in skip:
            continue
        c = score_pair(by_id[a], by_id[b], contexts.get(a, Context()), contexts.get(b, Context()), min_score)
        if c is not None:
            out.append(c)
    return sorted(out, key=lambda c: (-c.score, c.a_id, c.b_id))


# -- decisions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """A person's (or the opt-in auto-accept's) word on one pair, as stored in ``(:MergeDecision)``."""

    id: str  # pair_id
    decision: str  # "accepted" | "rejected"
    a_id: str
    b_id: str
    canonical_id: str | None = None  # accepted only: the entity that stays
    merged_id: str | None = None  # accepted only: the entity merged into it
    canonical_name: str | None = None
    canonical_type: str | None = None
    merged_name: str | None = None
    merged_type: str | None = None
    cross_type: bool = False
    score: float | None = None
    reasons: tuple[str, ...] = ()
    decided_by: str = "user"
    decided_at: str = ""
    note: str | None = None

    def properties(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        d["resolver"] = RESOLVER_VERSION
        return {k: v for k, v in d.items() if v is not None}


class AliasMap:
    """Accepted merges as merged id -> canonical id, resolved transitively to the entity that stays."""

    def __init__(self, decisions: Iterable[Decision]):
        self.parent = {d.merged_id: d.canonical_id for d in decisions if d.decision == "accepted" and d.merged_id}

    def root(self, entity: str) -> str:
        seen = set()
        while entity in self.parent:
            if entity in seen:
                raise ResolutionError(f"accepted merges form a cycle through {entity}")
            seen.add(entity)
            entity = self.parent[entity]
        return entity


def names_after_merges(decisions: Iterable[Decision]) -> dict[str, str]:
    """Accepted merges as merged-away entity name -> the name of the entity that finally stays (through chains);
    a name that stays itself is not a key. What a person's name-keyed word (``kg_loader.relation_review``) on a
    merged-away entity means after the merge."""
    accepted = [d for d in decisions if d.decision == "accepted" and d.merged_id]
    aliases = AliasMap(accepted)
    names = {d.canonical_id: d.canonical_name for d in accepted}
    out = {}
    for d in accepted:
        final = names.get(aliases.root(d.merged_id))
        if d.merged_name and final and final != d.merged_name:
            out[d.merged_name] = final
    return out


def names_after_merges_tx(tx) -> dict[str, str]:
    """``names_after_merges`` of the stored decisions, read in the caller's transaction."""
    return names_after_merges(_decision(r["d"]) for r in tx.run(READ_DECISIONS))


# -- Cypher ----------------------------------------------------------------------------------------

SCHEMA_STATEMENTS = (
    "CREATE CONSTRAINT merge_decision_id IF NOT EXISTS FOR (d:MergeDecision) REQUIRE d.id IS UNIQUE",
)

READ_ENTITIES = """
MATCH (e:Entity)
RETURN e.id AS id, e.name AS name, e.type AS type, coalesce(e.aliases, []) AS aliases,
       COUNT { (e)<-[:MENTIONS]-(:Post) } AS mentions, [(:Post)-[m:MENTIONS]->(e) | m.score] AS scores,
       EXISTS { MATCH (p:Post)-[m:MENTIONS]->(e)
                WHERE 0 < m.start <= size(p.text) AND substring(p.text, m.start - 1, 1) IN ['#', '@'] } AS tag
ORDER BY id
"""

READ_CONTEXT = """
UNWIND $ids AS id
MATCH (e:Entity {id: id})
RETURN id, [(p:Post)-[:MENTIONS]->(e) | p.id] AS posts,
       [(e)-[r]-(x:Entity) WHERE r.relation IS NOT NULL | type(r) + '|' + x.id] AS neighbours
"""

READ_DECISIONS = "MATCH (d:MergeDecision) RETURN properties(d) AS d ORDER BY d.decided_at, d.id"

#: Proposals that the new run no longer makes go; decided pairs' edges are left to their decision.
DROP_STALE_CANDIDATES = f"""
MATCH (:Entity)-[c:{CANDIDATE_TYPE}]->(:Entity)
WHERE c.status = 'proposed' AND NOT c.pair_id IN $keep
DELETE c
"""

WRITE_CANDIDATES = f"""
UNWIND $rows AS row
MATCH (a:Entity {{id: row.a_id}})
MATCH (b:Entity {{id: row.b_id}})
MERGE (a)-[c:{CANDIDATE_TYPE}]->(b)
SET c = row.props
"""

LIST_CANDIDATES = f"""
MATCH (a:Entity)-[c:{CANDIDATE_TYPE}]->(b:Entity)
WHERE $status IS NULL OR c.status = $status
RETURN a.id AS a_id, a.name AS a_name, a.type AS a_type, b.id AS b_id, b.name AS b_name, b.type AS b_type,
       properties(c) AS evidence
ORDER BY c.score DESC, a_id, b_id
"""

FIND_BY_ID_PREFIX = "MATCH (e:Entity) WHERE e.id STARTS WITH $prefix RETURN e.id AS id ORDER BY id"

FIND_BY_NAME = """
MATCH (e:Entity {name: $name})
WHERE $type IS NULL OR e.type = $type
RETURN e.id AS id, e.name AS name, e.type AS type ORDER BY id
"""

#: Evidence an entity has, to choose the canonical side of a pair.
ENTITY_EVIDENCE = """
UNWIND $ids AS id
MATCH (e:Entity {id: id})
RETURN e.id AS id, e.name AS name, e.type AS type, COUNT { (e)<-[:MENTIONS]-(:Post) } AS mentions,
       coalesce(reduce(s = 0, r IN [(e)-[r]-(:Entity) WHERE r.relation IS NOT NULL | r] |
                       s + coalesce(r.evidence_count, 0)), 0) AS relation_evidence
"""

WRITE_DECISION = """
MERGE (d:MergeDecision {id: $props.id})
SET d = $props
WITH d
OPTIONAL MATCH (:Entity {id: $props.a_id})-[c:SAME_AS_CANDIDATE]-(:Entity {id: $props.b_id})
FOREACH (_ IN CASE WHEN c IS NOT NULL AND $props.decision = 'accepted' THEN [1] ELSE [] END |
         SET c.status = 'accepted')
FOREACH (_ IN CASE WHEN c IS NOT NULL AND $props.decision = 'rejected' THEN [1] ELSE [] END | DELETE c)
"""

#: Held until the merge's transaction ends: two loads applying the same merge take turns.
LOCK_DECISION = "MATCH (d:MergeDecision {id: $id}) SET d.mmkg_lock = true REMOVE d.mmkg_lock"

#: ``properties(x).merged_ids``, not ``x.merged_ids``: the server warns of a property key no node has had yet
#: (a graph before its first merge), and loads run these queries (``kg_loader.type_agreement``).
READ_PAIR = """
OPTIONAL MATCH (m:Entity {id: $merged})
OPTIONAL MATCH (c:Entity {id: $canonical})
RETURN m IS NOT NULL AS merged_exists, c IS NOT NULL AS canonical_exists,
       coalesce(m.aliases, []) AS merged_aliases, coalesce(properties(m).merged_ids, []) AS merged_merged_ids
"""

MOVE_MENTIONS = """
MATCH (p:Post)-[m:MENTIONS]->(:Entity {id: $merged})
MATCH (c:Entity {id: $canonical})
MERGE (p)-[n:MENTIONS {start: m.start, end: m.end}]->(c)
SET n += properties(m)
DELETE m
RETURN count(*) AS moved
"""

READ_RELATIONS = f"""
MATCH (m:Entity {{id: $merged}})-[r]-(x:Entity)
WHERE type(r) <> '{CANDIDATE_TYPE}'
RETURN type(r) AS type, startNode(r) = m AS outgoing, x.id AS other, properties(r) AS props
ORDER BY type, outgoing DESC, other
"""

UPDATE_CANONICAL = "MATCH (c:Entity {id: $canonical}) SET c.aliases = $aliases, c.merged_ids = $merged_ids"

READ_CANONICAL = """
MATCH (c:Entity {id: $canonical})
RETURN coalesce(properties(c).merged_ids, []) AS merged_ids, coalesce(c.aliases, []) AS aliases
"""

DELETE_MERGED = "MATCH (m:Entity {id: $merged}) DETACH DELETE m"


def create_canonical(entity_type: str, broader: Sequence[str] = ()) -> str:
    """The canonical entity of an accepted pair when a load left only the merged-away id (its own posts
    no longer mention it): recreated from the decision, with its type label (and ``broader`` types' labels,
    as the loader gives them); it takes the aliases of what is folded into it. Also the entity of the agreed
    type that ``kg_loader.type_agreement`` creates when none is left."""
    labels = ":".join(cypher.label(t) for t in (entity_type, *broader))
    return f"""
MERGE (c:Entity {{id: $canonical}})
  ON CREATE SET c:{labels}, c += {{name: $name, type: $type, aliases: []}}
"""


def read_triples(rel_type: str) -> str:
    return f"""
UNWIND $pairs AS pr
MATCH (h:Entity {{id: pr.head}})-[r:{rel_type}]->(t:Entity {{id: pr.tail}})
RETURN h.id AS head, t.id AS tail, properties(r) AS props
"""


def write_triples(rel_type: str) -> str:
    return f"""
UNWIND $rows AS row
MATCH (h:Entity {{id: row.head}})
MATCH (t:Entity {{id: row.tail}})
MERGE (h)-[r:{rel_type}]->(t)
SET r = row.props
"""


# -- graph operations ----------------------------------------------------------------------------


def ensure_schema(driver, database: str | None = None) -> None:
    for statement in SCHEMA_STATEMENTS:
        driver.execute_query(statement, database_=database)


def read_decisions(driver, database: str | None = None) -> list[Decision]:
    records, _, _ = driver.execute_query(READ_DECISIONS, database_=database, routing_="r")
    return [_decision(r["d"]) for r in records]


def _decision(props: Mapping[str, Any]) -> Decision:
    d = {k: v for k, v in props.items() if k in Decision.__slots__}
    d["reasons"] = tuple(d.get("reasons") or ())
    return Decision(**d)


def read_entities(driver, database: str | None = None) -> list[EntityInfo]:
    records, _, _ = driver.execute_query(READ_ENTITIES, database_=database, routing_="r")
    return [
        EntityInfo(r["id"], r["name"] or "", r["type"] or "", tuple(r["aliases"]), r["mentions"],
                   bool(r["tag"]) or any(a.startswith(("#", "@")) for a in r["aliases"]),
                   _mean([x for x in r["scores"] if x is not None]))
        for r in records
    ]  # fmt: skip


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def read_contexts(driver, ids: Iterable[str], database: str | None = None) -> dict[str, Context]:
    ids = sorted(set(ids))
    out = {}
    for start in range(0, len(ids), 1000):
        records, _, _ = driver.execute_query(READ_CONTEXT, ids=ids[start : start + 1000], database_=database,
                                            routing_="r")
        out.update({r["id"]: Context(frozenset(r["posts"]), frozenset(r["neighbours"])) for r in records})
    return out


@dataclass
class ProposeReport:
    entities: int = 0
    pairs_compared: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    auto_accepted: list[str] = field(default_factory=list)  # pair ids

    def as_dict(self) -> dict[str, Any]:
        return {"entities": self.entities, "pairs_compared": self.pairs_compared,
                "candidates": len(self.candidates), "auto_accepted": list(self.auto_accepted)}  # fmt: skip


def propose_candidates(
    driver, database: str | None = None, *, min_score: float = DEFAULT_MIN_SCORE,
    max_block: int = DEFAULT_MAX_BLOCK, auto_accept_threshold: float | None = None,
) -> ProposeReport:
    """Score the graph's entity pairs and write the proposals (replacing the previous ones).

    Skipped: pairs with a decision; entities an accepted merge has not yet absorbed (run
    ``apply_accepted_merges`` first); pairs whose sides, after merges, hold a rejected pair.
    ``auto_accept_threshold`` (off by default): same-type candidates scoring at least this are accepted
    as ``decided_by: 'auto'`` (cross-type ones never); apply them with ``apply_accepted_merges``.
    """
    ensure_schema(driver, database)
    decisions = read_decisions(driver, database)
    aliases = AliasMap(decisions)
    entities = [e for e in read_entities(driver, database) if e.id not in aliases.parent]
    report = ProposeReport(entities=len(entities))
    pairs = blocked_pairs(entities, max_block)
    report.pairs_compared = len(pairs)
    rejected = {pair_id(aliases.root(d.a_id), aliases.root(d.b_id)) for d in decisions if d.decision == "rejected"}
    excluded = {d.id for d in decisions} | rejected
    contexts = read_contexts(driver, {i for p in pairs for i in p}, database)
    report.candidates = find_candidates(entities, contexts, min_score, max_block, excluded)
    keep = [c.pair_id for c in report.candidates]
    rows = [{"a_id": c.a_id, "b_id": c.b_id, "props": c.edge_properties()} for c in report.candidates]

    def write(tx) -> None:  # the old proposals are replaced by the new ones in one transaction
        tx.run(DROP_STALE_CANDIDATES, keep=keep).consume()
        for start in range(0, len(rows), 1000):
            tx.run(WRITE_CANDIDATES, rows=rows[start : start + 1000]).consume()

    with driver.session(database=database) as session:
        session.execute_write(write)
    if auto_accept_threshold is not None:
        for c in report.candidates:
            if c.score >= auto_accept_threshold and not c.cross_type:
                accept(driver, c.a_id, c.b_id, database, decided_by="auto",
                       note=f"auto-accepted: score {c.score} >= {auto_accept_threshold}")  # fmt: skip
                report.auto_accepted.append(c.pair_id)
    return report


def list_candidates(driver, database: str | None = None, status: str | None = "proposed") -> list[dict[str, Any]]:
    """Candidate edges (``status`` None: all), best first, each with both entities and its evidence."""
    records, _, _ = driver.execute_query(LIST_CANDIDATES, status=status, database_=database, routing_="r")
    return [r.data() for r in records]


def resolve_entity(driver, ref: str, database: str | None = None, entity_type: str | None = None) -> str:
    """An entity id from a reference: an id (or a unique prefix of 8+ hex digits), ``name`` or
    ``Type:name`` (the name as written or normalised). An id or name that an accepted merge took away
    resolves to the entity it was merged into."""
    aliases = AliasMap(read_decisions(driver, database))
    ref = ref.strip()
    if entity_type is None and ":" in ref:
        head, rest = ref.split(":", 1)
        try:
            cypher.label(head.strip())
            entity_type, ref = head.strip(), rest.strip()
        except cypher.InvalidIdentifier:
            pass  # a name with a colon in it
    if entity_type is None and _ENTITY_ID.match(ref):
        records, _, _ = driver.execute_query(FIND_BY_ID_PREFIX, prefix=ref, database_=database, routing_="r")
        ids = {r["id"] for r in records} | {m for m in aliases.parent if m.startswith(ref)}
        if len(ids) > 1:
            raise ResolutionError(f"id prefix {ref!r} matches {len(ids)} entities: {', '.join(sorted(ids))}")
        if ids:
            return aliases.root(ids.pop())
    name = normalize_name(ref) if ref else ""
    records, _, _ = driver.execute_query(FIND_BY_NAME, name=name, type=entity_type, database_=database,
                                          routing_="r")
    found = [r.data() for r in records]
    if not found:  # merged away? its id is (name, type) under identity
        types = [entity_type] if entity_type else sorted({t for t in _entity_types(driver, database)})
        gone = sorted({m for t in types if (m := entity_id(name, t)) in aliases.parent})
        if len(gone) == 1:
            return aliases.root(gone[0])
        what = f"{entity_type}:{ref}" if entity_type else ref
        raise ResolutionError(f"no entity {what!r} (give an entity id, a unique id prefix, a name or Type:name)")
    if len(found) > 1:
        listed = ", ".join(f"{f['type']}:{f['name']} ({f['id']})" for f in found)
        raise ResolutionError(f"{ref!r} is ambiguous: {listed}; give the id or Type:name")
    return aliases.root(found[0]["id"])


def _entity_types(driver, database: str | None) -> list[str]:
    records, _, _ = driver.execute_query(
        "MATCH (e:Entity) RETURN DISTINCT e.type AS t UNION MATCH (d:MergeDecision) "
        "WHERE d.merged_type IS NOT NULL RETURN DISTINCT d.merged_type AS t", database_=database, routing_="r")
    return [r["t"] for r in records if r["t"]]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _decision_pair(driver, a: str, b: str, database: str | None, same: str) -> tuple[str, str, str, Decision | None]:
    """What accepting and rejecting both start from: the two references resolved (refused when they are one
    entity, with ``same`` saying so), the pair's key and its earlier decision, if any."""
    ensure_schema(driver, database)
    ra, rb = resolve_entity(driver, a, database), resolve_entity(driver, b, database)
    if ra == rb:
        raise ResolutionError(f"{a!r} and {b!r} {same} ({ra})")
    key = pair_id(ra, rb)
    return ra, rb, key, {d.id: d for d in read_decisions(driver, database)}.get(key)


def accept(
    driver, a: str, b: str, database: str | None = None, *, decided_by: str = "user", note: str | None = None,
    allow_cross_type: bool = False,
) -> Decision:
    """Record that entities ``a`` and ``b`` (references as ``resolve_entity`` takes) are one; the merge
    itself happens in ``apply_accepted_merges``. Across two types only when proposed as ``cross_type``
    (``cross_type_evidence``: equal normalised names, or a co-mentioned handle spelling the name) or with
    ``allow_cross_type``."""
    ra, rb, key, previous = _decision_pair(driver, a, b, database, "are already one entity")
    if previous is not None and previous.decision == "accepted":
        return previous
    records, _, _ = driver.execute_query(ENTITY_EVIDENCE, ids=[ra, rb], database_=database, routing_="r")
    info = {r["id"]: r.data() for r in records}
    if missing := [i for i in (ra, rb) if i not in info]:
        raise ResolutionError(f"entity {missing[0]} is not in the graph (run `mmkg entities apply`, then retry)")
    candidate = _candidate_edge(driver, ra, rb, database)
    cross_type = info[ra]["type"] != info[rb]["type"]
    if cross_type and not allow_cross_type and not (candidate and candidate.get("cross_type")):
        raise ResolutionError(
            f"{info[ra]['type']}:{info[ra]['name']} and {info[rb]['type']}:{info[rb]['name']} have different types "
            "and no cross-type candidate (equal normalised names, or a handle spelling the name) says they are one; "
            "pass allow_cross_type (mmkg entities accept --allow-cross-type) if you are sure"
        )
    canonical, merged = sorted((ra, rb), key=lambda i: (-info[i]["mentions"], -info[i]["relation_evidence"], i))
    x, y = sorted((ra, rb))
    decision = Decision(
        id=key, decision="accepted", a_id=x, b_id=y, canonical_id=canonical, merged_id=merged,
        canonical_name=info[canonical]["name"], canonical_type=info[canonical]["type"],
        merged_name=info[merged]["name"], merged_type=info[merged]["type"], cross_type=cross_type,
        score=candidate.get("score") if candidate else None,
        reasons=tuple(candidate.get("reasons") or ()) if candidate else (),
        decided_by=decided_by, decided_at=_now(),
        note=note if previous is None else f"{note + '; ' if note else ''}was rejected on {previous.decided_at}",
    )  # fmt: skip
    driver.execute_query(WRITE_DECISION, props=decision.properties(), database_=database)
    return decision


def reject(driver, a: str, b: str, database: str | None = None, *, decided_by: str = "user",
           note: str | None = None) -> Decision:  # fmt: skip
    """Record that ``a`` and ``b`` are different entities: the pair (and any pair their merges make of
    them later) is never proposed again. An accepted merge cannot be rejected (it has been applied)."""
    ra, rb, key, previous = _decision_pair(driver, a, b, database,
                                           "are one entity already: an applied merge is not undone")
    if previous is not None and previous.decision == "accepted":
        raise ResolutionError(f"the pair {key} was accepted on {previous.decided_at}: an accepted merge is not undone")
    if previous is not None:
        return previous
    candidate = _candidate_edge(driver, ra, rb, database)
    x, y = sorted((ra, rb))
    decision = Decision(id=key, decision="rejected", a_id=x, b_id=y,
                        score=candidate.get("score") if candidate else None,
                        reasons=tuple(candidate.get("reasons") or ()) if candidate else (),
                        decided_by=decided_by, decided_at=_now(), note=note)  # fmt: skip
    driver.execute_query(WRITE_DECISION, props=decision.properties(), database_=database)
    return decision


def _candidate_edge(driver, a: str, b: str, database: str | None) -> dict | None:
    records, _, _ = driver.execute_query(
        f"MATCH (:Entity {{id: $a}})-[c:{CANDIDATE_TYPE}]-(:Entity {{id: $b}}) RETURN properties(c) AS c",
        a=a, b=b, database_=database, routing_="r",
    )
    return records[0]["c"] if records else None


@dataclass
class ApplyReport:
    """What ``apply_accepted_merges`` did (all zero when there was nothing to merge)."""

    decisions: int = 0
    merges_applied: int = 0
    mentions_moved: int = 0
    relations_moved: int = 0
    relations_combined: int = 0
    self_loops_dropped: int = 0
    canonical_recreated: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def combine_evidence(target: Mapping[str, Any] | None, sources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One triple's properties from the canonical triple (``target``, may be None) and the moved ones.

    Evidence is per post: the union of ``post_ids``, a post in several keeps its best score; lists in
    post-id order; ``evidence_count`` and ``max_score`` recomputed. The other properties are the
    canonical triple's, else the first moved one's.
    """
    parts = ([target] if target else []) + list(sources)
    best: dict[str, float] = {}
    for props in parts:
        for post, score in zip(props.get("post_ids") or [], props.get("scores") or []):
            if post not in best or score > best[post]:
                best[post] = score
    out = dict(parts[0])
    out["post_ids"] = sorted(best)
    out["scores"] = [best[p] for p in out["post_ids"]]
    out["evidence_count"] = len(best)
    out["max_score"] = max(best.values(), default=0.0)
    return out


def apply_accepted_merges(
    driver, database: str | None = None, symmetric: Iterable[str] = (),
) -> ApplyReport:
    """Merge every accepted pair whose merged-away entity is in the graph (again) into its canonical one.

    Idempotent: with nothing to merge it only reads the decisions. One transaction per merged-away
    entity, in id order (a chain a -> b -> c lands on c). Call it after each load (a load that writes a
    merged-away id recreates that entity) with the label set's symmetric relations
    (``GraphWriter.symmetric_relations``), whose triples keep the smaller id as head.
    """
    decisions = read_decisions(driver, database)
    report = ApplyReport()
    with driver.session(database=database) as session:
        for args in _merge_plan(decisions, report):
            _add(report, session.execute_write(_merge_one, *args, frozenset(symmetric)))
    return report


def apply_accepted_merges_tx(tx, symmetric: Iterable[str] = ()) -> ApplyReport:
    """``apply_accepted_merges`` inside the caller's transaction (e.g. a shard's load, so that the load
    and the merges it needs commit together)."""
    decisions = [_decision(r["d"]) for r in tx.run(READ_DECISIONS)]
    report = ApplyReport()
    for args in _merge_plan(decisions, report):
        _add(report, _merge_one(tx, *args, frozenset(symmetric)))
    return report


def _merge_plan(decisions: Sequence[Decision], report: ApplyReport) -> list[tuple]:
    """``(decision id, merged id, canonical id, canonical name, canonical type)`` per merged-away id."""
    accepted = [d for d in decisions if d.decision == "accepted" and d.merged_id]
    report.decisions = len(accepted)
    aliases = AliasMap(accepted)
    by_merged = {d.merged_id: d for d in accepted}
    #: What the entity that stays is (to recreate it when a load left only a merged-away id).
    canonical_info = {d.canonical_id: (d.canonical_name, d.canonical_type) for d in accepted}
    plan = []
    for merged in sorted(by_merged):
        canonical = aliases.root(merged)
        plan.append((by_merged[merged].id, merged, canonical, *canonical_info.get(canonical, (None, None))))
    return plan


def _add(report: ApplyReport, counts: Mapping[str, int]) -> None:
    for key, n in counts.items():
        setattr(report, key, getattr(report, key) + n)


def _merge_one(tx, decision_id: str, merged: str, canonical: str, name: str | None, etype: str | None,
               symmetric: frozenset[str]) -> dict[str, int]:  # fmt: skip
    """One merged-away entity into its canonical one, in the caller's transaction; returns the counts
    (the managed retry may run this more than once: it reads everything afresh and counts only here)."""
    counts = dict.fromkeys(("merges_applied", "mentions_moved", "relations_moved", "relations_combined",
                            "self_loops_dropped", "canonical_recreated"), 0)  # fmt: skip
    tx.run(LOCK_DECISION, id=decision_id).consume()
    state = tx.run(READ_PAIR, merged=merged, canonical=canonical).single()
    if not state["merged_exists"]:
        return counts
    if not state["canonical_exists"]:
        if not etype:
            raise ResolutionError(f"canonical entity {canonical} is gone and no decision names its type")
        tx.run(create_canonical(etype), canonical=canonical, name=name, type=etype).consume()
        counts["canonical_recreated"] += 1
    fold_entity(tx, merged, canonical, symmetric, counts, why=f"merge {decision_id}")
    return counts


def fold_entity(tx, merged: str, canonical: str, symmetric: frozenset[str], counts: dict[str, int],
                why: str) -> None:  # fmt: skip
    """Entity ``merged`` into ``canonical`` (both in the graph), in the caller's transaction: its MENTIONS (same
    spans and properties), its relation triples (evidence combined per post, ``combine_evidence``; a triple
    between the two is dropped as a self-loop; a symmetric one keeps the smaller id as head), its aliases
    and its id (in ``merged_ids``); then the merged node is deleted. Adds to ``counts``; ``why`` names the
    decision or rule in errors."""
    merged_state = tx.run(READ_PAIR, merged=merged, canonical=canonical).single()
    counts["mentions_moved"] += tx.run(MOVE_MENTIONS, merged=merged, canonical=canonical).single()["moved"]
    # Relation triples, grouped by relationship type: a type is interpolated only once validated.
    targets: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in tx.run(READ_RELATIONS, merged=merged):
        rel_type, props, other = r["type"], dict(r["props"]), r["other"]
        relation = props.get("relation")
        if not isinstance(relation, str) or cypher.relationship_type(relation) != f"`{rel_type}`":
            raise cypher.InvalidIdentifier(
                f"relationship {rel_type} of entity {merged} is not a relation triple of the label set "
                f"(relation={relation!r}); {why} not applied"
            )
        if other in (merged, canonical):
            counts["self_loops_dropped"] += 1
            continue
        head, tail = (canonical, other) if r["outgoing"] else (other, canonical)
        if relation in symmetric and tail < head:
            head, tail = tail, head
        targets[(rel_type, head, tail)].append(props)
    by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for rel_type, head, tail in sorted(targets):
        by_type[rel_type].append((head, tail))
    for rel_type, pairs in by_type.items():
        quoted = f"`{rel_type}`"  # checked against the relation name above, for every relationship
        existing = {
            (rec["head"], rec["tail"]): dict(rec["props"])
            for rec in tx.run(read_triples(quoted), pairs=[{"head": h, "tail": t} for h, t in pairs])
        }
        rows = []
        for head, tail in pairs:
            sources, target = targets[(rel_type, head, tail)], existing.get((head, tail))
            rows.append({"head": head, "tail": tail, "props": combine_evidence(target, sources)})
            counts["relations_moved"] += len(sources)
            counts["relations_combined"] += target is not None
        tx.run(write_triples(quoted), rows=rows).consume()
    kept = tx.run(READ_CANONICAL, canonical=canonical).single()
    merged_ids = sorted({*kept["merged_ids"], merged, *merged_state["merged_merged_ids"]} - {canonical})
    aliases = sorted({*kept["aliases"], *merged_state["merged_aliases"]})  # sorted, as the loader keeps them
    tx.run(UPDATE_CANONICAL, canonical=canonical, aliases=aliases, merged_ids=merged_ids).consume()
    tx.run(DELETE_MERGED, merged=merged).consume()
    counts["merges_applied"] += 1
