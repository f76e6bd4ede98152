"""Pure scoring of the graph-quality benchmark: gold building, span matching, the direction rule,
type mappings and P/R/F. No I/O, no Neo4j, no models: everything here is tested with hand-made
records in ``tests/test_graph_quality.py``.

Units.

- A *triple instance* is one (triple, supporting post): a relationship ``(h)-[r]->(t)`` of the graph
  and one id of its ``r.post_ids``. It is mapped back to the mention spans of ``h`` and of ``t`` in
  that post (the ``start``/``end`` of the post's ``MENTIONS`` to each entity) and so to the post's
  gold pairs. A data team reading ``MATCH (h)-[r]->(t)`` row by row sees exactly these.
- A *gold pair* is an unordered pair of annotated entity spans of one post, with the post's
  annotations on it (``(head, tail, relation)``; relation ``None`` = annotated "no relation").

Matching a gold entity (``MATCH_MODES``):

- ``name`` (headline): the graph entity *of that post* (the post ``MENTIONS`` it) whose normalised name
  (``Entity.name``, ``mmkg.identity.normalize_name`` of the mention's identity surface) equals
  ``normalize_name`` of the gold surface (the text of the gold token span). This is how the graph
  identifies entities, so it is "the same entity in that post", what a Cypher user sees: gold
  ``@Titans`` is the entity ``titans`` whatever the detector's span (``Titans``, without the sign).
- ``exact``: a mention's character span equals the gold span (secondary; a detector span never holds
  a handle's or hashtag's sign, so gold ``@Titans`` is never matched this way).
- ``overlap``: a mention's character span shares a character with the gold span (secondary, lenient).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mmkg.identity import normalize_name

Span = tuple[int, int]  # character offsets [start, end)
Key = Span | str  # what a gold entity is matched on: a span (exact, overlap) or a normalised name (name)

#: MNRE relations for which either order of head and tail is right.
SYMMETRIC_RELATIONS = frozenset(
    {"/per/per/peer", "/per/per/siblings", "/per/per/couple", "/per/per/neighbor", "/per/per/alumi"}
)
MATCH_MODES = ("name", "exact", "overlap")
HEADLINE_MATCH = "name"
MATCH_TITLES = {
    "name": "same entity in the post: graph entity name = normalize_name(gold surface) (headline)",
    "exact": "secondary: exact character span",
    "overlap": "secondary, lenient: mention span overlaps the gold span",
}

# --------------------------------------------------------------------- the typed MNRE ontology
#: The entity types an MNRE relation's argument abbreviation stands for, as a user writing the label
#: set would put them: ``/per/loc/place_of_birth`` -> head Person, tail Location.
ARGUMENT_TYPES = {
    "per": ("Person",),
    "org": ("Organization",),
    "loc": ("Location",),
    "misc": ("Event", "Product", "Location", "Organization"),
}


def typed_allowed(mnre_relation: str) -> list[list[str]]:
    """Allowed (head type, tail type) pairs from an MNRE relation's argument types:
    ``/per/loc/place_of_birth`` -> ``[["Person", "Location"]]``; ``misc`` is any of ``ARGUMENT_TYPES["misc"]``."""
    parts = mnre_relation.strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ARGUMENT_TYPES or parts[1] not in ARGUMENT_TYPES:
        raise ValueError(f"{mnre_relation!r}: not an MNRE relation name /<head>/<tail>/<name> with head and tail in "
                         f"{sorted(ARGUMENT_TYPES)}")
    return [[h, t] for h in ARGUMENT_TYPES[parts[0]] for t in ARGUMENT_TYPES[parts[1]]]

# ----------------------------------------------------------------------------------- type maps
COARSE_TYPES = ("PER", "LOC", "ORG", "MISC")
_ONTOLOGY_TO_COARSE = {"Person": "PER", "Location": "LOC", "Organization": "ORG"}
_SPACY_TO_COARSE = {"PERSON": "PER", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "ORG": "ORG"}
_COARSE_TO_ONTOLOGY = {"PER": "Person", "LOC": "Location", "ORG": "Organization"}


#: WNUT-16 type -> Twitter-2017 type, for scoring typed entities on WNUT-16 test. A music artist is a singer
#: (PER) or a band (ORG): either is right (``PER|ORG``).
WNUT_TO_COARSE = {"person": "PER", "geo-loc": "LOC", "facility": "LOC", "company": "ORG", "sportsteam": "ORG",
                  "musicartist": "PER|ORG", "product": "MISC", "movie": "MISC", "tvshow": "MISC", "other": "MISC"}


def coarse_type(ontology_type: str) -> str:
    """Ontology type -> Twitter-2017 type: Person/Location/Organization -> PER/LOC/ORG, else MISC."""
    return _ONTOLOGY_TO_COARSE.get(ontology_type, "MISC")


def spacy_coarse_type(label: str) -> str:
    """spaCy (OntoNotes) label -> PER / LOC (GPE, LOC, FAC) / ORG, anything else MISC."""
    return _SPACY_TO_COARSE.get(label, "MISC")


def spacy_ontology_type(label: str) -> str:
    """The shipped ontology type a plain-spaCy entity is written as, so that ``coarse_type`` of it is
    ``spacy_coarse_type(label)``: PER/LOC/ORG as Person/Location/Organization, MISC as Event (spaCy
    EVENT) or Product (NORP, PRODUCT, WORK_OF_ART, ...; any non-PER/LOC/ORG type maps back to MISC)."""
    coarse = spacy_coarse_type(label)
    if coarse in _COARSE_TO_ONTOLOGY:
        return _COARSE_TO_ONTOLOGY[coarse]
    return "Event" if label == "EVENT" else "Product"


# ------------------------------------------------------------------------------------- MNRE gold
def relation_name(mnre_relation: str) -> str:
    """MNRE name -> ontology (snake_case) name: ``/per/loc/place_of_birth`` -> ``per_loc_place_of_birth``."""
    return mnre_relation.strip("/").replace("/", "_")


def mnre_text(tokens: Sequence[str]) -> str:
    """The post text of an MNRE line: its tokens joined with single spaces."""
    return " ".join(tokens)


def mnre_post_id(text: str) -> str:
    """Deterministic post id of an MNRE text (lines sharing a text are one post)."""
    return "mnre-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def token_char_spans(tokens: Sequence[str]) -> list[Span]:
    """Character span of each token in ``mnre_text(tokens)``."""
    out, pos = [], 0
    for tok in tokens:
        out.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return out


def char_span(tokens: Sequence[str], pos: Sequence[int]) -> Span:
    """Token offsets ``[start, end)`` -> character offsets in ``mnre_text(tokens)``."""
    start, end = int(pos[0]), int(pos[1])
    if not 0 <= start < end <= len(tokens):
        raise ValueError(f"bad token span {list(pos)} for {len(tokens)} tokens")
    spans = token_char_spans(tokens)
    return spans[start][0], spans[end - 1][1]


def gold_name(surface: str) -> str:
    """The name a gold entity is matched on: ``normalize_name`` of its surface (``@Titans`` -> ``titans``)."""
    return normalize_name(surface)


@dataclass(frozen=True)
class GoldAnnotation:
    head: Span
    tail: Span
    relation: str | None  # MNRE name, None for an annotated "no relation" pair
    #: ``gold_name`` of the head's and tail's surfaces (a function of the span in its post, so not compared).
    head_name: str | None = field(default=None, compare=False)
    tail_name: str | None = field(default=None, compare=False)

    def keys(self, mode: str) -> tuple[Key, Key]:
        """(head, tail) as matched in ``mode``: spans, or names for ``name``."""
        if mode == "name":
            if self.head_name is None or self.tail_name is None:
                raise ValueError(f"annotation {self} has no names: name matching needs them")
            return self.head_name, self.tail_name
        return self.head, self.tail


@dataclass
class MnrePost:
    """One post of MNRE lines sharing a text, with every annotation of those lines (deduplicated)."""

    id: str
    text: str
    annotations: list[GoldAnnotation] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # 0-based line numbers in the file
    img_ids: list[str] = field(default_factory=list)


def build_mnre_posts(rows: Iterable[Mapping]) -> list[MnrePost]:
    """MNRE records (``ast.literal_eval`` of each line) -> posts, in order of first appearance.

    Lines with the same text are one post; identical annotations (same spans, same relation) are
    kept once. Each annotation's entity name must be the text of its span (checked, so a wrong
    offset computation fails loudly rather than scoring the wrong spans)."""
    posts: dict[str, MnrePost] = {}
    for i, r in enumerate(rows):
        tokens = list(r["token"])
        text = mnre_text(tokens)
        post = posts.get(text)
        if post is None:
            post = posts[text] = MnrePost(mnre_post_id(text), text)
        post.lines.append(i)
        if r.get("img_id") and r["img_id"] not in post.img_ids:
            post.img_ids.append(r["img_id"])
        head, tail = char_span(tokens, r["h"]["pos"]), char_span(tokens, r["t"]["pos"])
        for span, ent in ((head, r["h"]), (tail, r["t"])):
            name = ent.get("name")
            if name is not None and name.split() != text[span[0] : span[1]].split():
                raise ValueError(f"line {i}: entity {name!r} is not the text of its span {text[span[0]:span[1]]!r}")
        rel = r["relation"]
        ann = GoldAnnotation(head, tail, None if rel in (None, "None") else str(rel),
                             gold_name(text[head[0] : head[1]]), gold_name(text[tail[0] : tail[1]]))
        if ann not in post.annotations:
            post.annotations.append(ann)
    return list(posts.values())


def leaked_texts(files: Iterable[Iterable[Mapping]], train_relations: Iterable[str]) -> set[str]:
    """Texts of every sample, in any file, of a relation the checkpoint was trained on."""
    train = set(train_relations)
    return {mnre_text(r["token"]) for rows in files for r in rows if r["relation"] in train}


def split_leaked(posts: Sequence[MnrePost], leaked: set[str]) -> tuple[list[MnrePost], list[MnrePost]]:
    """(kept, excluded): posts whose text is a training sample's text are excluded from scoring."""
    kept = [p for p in posts if p.text not in leaked]
    excluded = [p for p in posts if p.text in leaked]
    return kept, excluded


@dataclass(frozen=True)
class GoldPair:
    """An unordered pair of annotated spans of one post.

    ``scope``: ``"test"`` (some annotation is a test relation; ``annotations`` holds those),
    ``"none"`` (annotated no-relation only), ``"other"`` (only relations outside the ontology).
    """

    post_id: str
    spans: tuple[Span, Span]  # sorted
    scope: str
    annotations: tuple[GoldAnnotation, ...]
    names: tuple[str, str] | None = field(default=None, compare=False)  # gold_name of each span, in order

    def keys(self, mode: str) -> tuple[Key, Key]:
        if mode == "name":
            if self.names is None:
                raise ValueError(f"gold pair {self.spans} of {self.post_id} has no names: name matching needs them")
            return self.names
        return self.spans


def gold_pairs(post: MnrePost, test_relations: Iterable[str]) -> list[GoldPair]:
    test = set(test_relations)
    grouped: dict[tuple[Span, Span], list[GoldAnnotation]] = defaultdict(list)
    name_of: dict[Span, str | None] = {}
    for ann in post.annotations:
        if ann.head == ann.tail:
            continue  # not a pair
        grouped[tuple(sorted((ann.head, ann.tail)))].append(ann)
        name_of[ann.head], name_of[ann.tail] = ann.head_name, ann.tail_name
    out = []
    for key, anns in grouped.items():
        names = (name_of[key[0]], name_of[key[1]])
        names = None if None in names else names
        related = [a for a in anns if a.relation is not None]
        in_test = tuple(a for a in related if a.relation in test)
        if in_test:
            out.append(GoldPair(post.id, key, "test", in_test, names))
        elif not related:
            out.append(GoldPair(post.id, key, "none", tuple(anns), names))
        else:
            out.append(GoldPair(post.id, key, "other", tuple(related), names))
    return out


def one_name_pairs(pairs: Iterable[GoldPair]) -> dict[str, int]:
    """Gold pairs, by scope, whose two spans are one entity by name (``#NYC`` and ``NYC``): the graph
    never relates an entity to itself (the loader drops self-loops), so under ``name`` matching such a
    pair can only be reached through two entities of one name and different types."""
    out: dict[str, int] = defaultdict(int)
    for p in pairs:
        if p.names is not None and p.names[0] == p.names[1]:
            out[p.scope] += 1
    return dict(out)


# --------------------------------------------------------------------------------- matching
def spans_match(predicted: Span, gold: Span, mode: str = "exact") -> bool:
    """``exact``: the same character span; ``overlap``: at least one character in common."""
    if mode == "exact":
        return tuple(predicted) == tuple(gold)
    if mode == "overlap":
        return predicted[0] < gold[1] and gold[0] < predicted[1]
    raise ValueError(f"unknown span match mode {mode!r}; known: exact, overlap")


def keys_match(predicted: Key, gold: Key, mode: str = "exact") -> bool:
    """``name``: a graph entity's name equals the gold name (an empty name matches nothing); else
    ``spans_match``."""
    if mode == "name":
        return isinstance(predicted, str) and isinstance(gold, str) and bool(gold) and predicted == gold
    if mode not in MATCH_MODES:
        raise ValueError(f"unknown match mode {mode!r}; known: {MATCH_MODES}")
    return spans_match(predicted, gold, mode)


def direction_ok(relation: str, head: Key, tail: Key, gold: GoldAnnotation, mode: str = "exact") -> bool:
    """Whether a predicted ``head -relation-> tail`` states the annotation: the same relation, and the
    head on the gold head and the tail on the gold tail, or either order for a symmetric relation.
    ``head``/``tail`` are spans, or entity names for ``name`` matching."""
    if gold.relation is None or relation != gold.relation:
        return False
    g_head, g_tail = gold.keys(mode)
    if keys_match(head, g_head, mode) and keys_match(tail, g_tail, mode):
        return True
    return relation in SYMMETRIC_RELATIONS and keys_match(head, g_tail, mode) and keys_match(tail, g_head, mode)


# ------------------------------------------------------------------------------ triple instances
@dataclass(frozen=True)
class TripleInstance:
    """One (relationship, supporting post) of the graph, with the entities' mention spans in that post."""

    post_id: str
    relation: str  # MNRE name (mapped back from the relationship type); unknown types kept as written
    head_id: str
    tail_id: str
    head_spans: tuple[Span, ...]
    tail_spans: tuple[Span, ...]
    evidence_count: int = 1
    score: float | None = None
    head_name: str | None = None  # the entities' ``name`` (normalised), for ``name`` matching
    tail_name: str | None = None

    @property
    def self_loop(self) -> bool:
        return self.head_id == self.tail_id

    def span_pairs(self) -> list[tuple[Span, Span]]:
        """(head span, tail span) readings of this instance: every mention of the head entity in the
        post with every *other* mention of the tail entity (one each, unless an entity is named twice)."""
        return [(a, b) for a in self.head_spans for b in self.tail_spans if tuple(a) != tuple(b)]

    def readings(self, mode: str = "exact") -> list[tuple[Key, Key]]:
        """(head, tail) readings as matched in ``mode``: ``span_pairs()``, or for ``name`` the one
        reading (head entity's name, tail entity's name), given both entities are entities of the post
        (the post ``MENTIONS`` each)."""
        if mode != "name":
            return self.span_pairs()
        if self.head_name is None or self.tail_name is None:
            raise ValueError(f"triple instance of {self.post_id} has no entity names: name matching needs them")
        return [(self.head_name, self.tail_name)] if self.head_spans and self.tail_spans else []


def _pair_matches(instance: TripleInstance, pair: GoldPair, mode: str) -> bool:
    g1, g2 = pair.keys(mode)
    return any(
        (keys_match(a, g1, mode) and keys_match(b, g2, mode)) or (keys_match(a, g2, mode) and keys_match(b, g1, mode))
        for a, b in instance.readings(mode)
    )


def judge_instance(instance: TripleInstance, pairs: Sequence[GoldPair], mode: str = "exact") -> dict:
    """Where one instance lands among its post's gold pairs, and whether it is right.

    Returns ``{"where": "annotated" | "other" | "unannotated", "verdict": "correct" |
    "wrong_relation" | "wrong_direction" | "none_pair" | None, "matched": n}``. An instance on an
    in-scope pair (test relation or ``None``) is correct when some annotation of a pair it lands on
    has its relation, in its direction (either for symmetric relations); a relation on a ``None``
    pair is wrong (``none_pair``). Pairs annotated only with relations outside the ontology are
    ``other`` (not scored); no pair at all: ``unannotated``.
    """
    matched = [p for p in pairs if p.post_id == instance.post_id and _pair_matches(instance, p, mode)]
    scored = [p for p in matched if p.scope in ("test", "none")]
    if not scored:
        return {"where": "other" if matched else "unannotated", "verdict": None, "matched": len(matched)}
    readings = instance.readings(mode)
    anns = [a for p in scored if p.scope == "test" for a in p.annotations]
    if any(direction_ok(instance.relation, h, t, a, mode) for a in anns for h, t in readings):
        verdict = "correct"
    elif any(a.relation == instance.relation for a in anns):
        verdict = "wrong_direction"
    elif anns:
        verdict = "wrong_relation"
    else:
        verdict = "none_pair"
    return {"where": "annotated", "verdict": verdict, "matched": len(scored)}


def recovered(gold: GoldAnnotation, post_id: str, instances: Iterable[TripleInstance], mode: str = "exact") -> bool:
    """Whether some instance of the post states this (non-None) gold annotation."""
    return any(
        inst.post_id == post_id and direction_ok(inst.relation, h, t, gold, mode)
        for inst in instances
        for h, t in inst.readings(mode)
    )


def prf(tp_pred: int, predicted: int, tp_gold: int, gold: int) -> dict:
    """P = tp_pred / predicted, R = tp_gold / gold, F1 and F0.5 (in %, rounded to 0.1)."""
    p = tp_pred / predicted if predicted else 0.0
    r = tp_gold / gold if gold else 0.0

    def f(beta: float) -> float:
        b2 = beta * beta
        return (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0

    return {"precision": _pct(p), "recall": _pct(r), "f1": _pct(f(1.0)), "f0_5": _pct(f(0.5))}


def _pct(x: float) -> float:
    return round(100.0 * x, 1)


def score_relations(
    instances: Sequence[TripleInstance],
    pairs: Sequence[GoldPair],
    test_relations: Iterable[str],
    mode: str = "exact",
) -> dict:
    """All relation numbers of one graph. ``pairs``: the gold pairs of every scored post.

    Micro P is the triple precision on annotated pairs (instances); micro R is the share of the gold
    non-None test-relation annotations that some instance states (right relation and direction).
    """
    test = list(test_relations)
    by_post: dict[str, list[GoldPair]] = defaultdict(list)
    for p in pairs:
        by_post[p.post_id].append(p)
    inst_by_post: dict[str, list[TripleInstance]] = defaultdict(list)
    for inst in instances:
        inst_by_post[inst.post_id].append(inst)

    counts = defaultdict(int)
    per_rel = {r: defaultdict(int) for r in test}
    for inst in instances:
        j = judge_instance(inst, by_post.get(inst.post_id, ()), mode)
        counts["instances"] += 1
        counts[f"on_{j['where']}"] += 1
        if j["matched"] > 1:
            counts["ambiguous"] += 1
        if j["where"] == "annotated":
            counts[j["verdict"]] += 1
            if inst.evidence_count >= 2:
                counts["multi_post_on_annotated"] += 1
                counts["multi_post_correct"] += j["verdict"] == "correct"
            if inst.relation in per_rel:
                per_rel[inst.relation]["predicted_on_annotated"] += 1
                per_rel[inst.relation]["correct"] += j["verdict"] == "correct"
        if inst.evidence_count >= 2:
            counts["multi_post_instances"] += 1

    gold_total = gold_hit = 0
    for p in pairs:
        if p.scope != "test":
            continue
        for ann in p.annotations:
            gold_total += 1
            hit = recovered(ann, p.post_id, inst_by_post.get(p.post_id, ()), mode)
            gold_hit += hit
            per_rel[ann.relation]["gold"] += 1
            per_rel[ann.relation]["recovered"] += hit

    on_ann, correct = counts["on_annotated"], counts["correct"]
    out = {
        "mode": mode,
        "instances": counts["instances"],
        "on_annotated_pairs": on_ann,
        "correct": correct,
        "wrong_relation": counts["wrong_relation"],
        "wrong_direction": counts["wrong_direction"],
        "relation_on_none_pair": counts["none_pair"],
        "on_out_of_ontology_pairs": counts["on_other"],
        "on_unannotated_pairs": counts["on_unannotated"],
        "ambiguous_instances": counts["ambiguous"],
        "triple_precision": _pct(correct / on_ann) if on_ann else None,
        "multi_post": {
            "instances": counts["multi_post_instances"],
            "on_annotated_pairs": counts["multi_post_on_annotated"],
            "correct": counts["multi_post_correct"],
            "precision": _pct(counts["multi_post_correct"] / counts["multi_post_on_annotated"])
            if counts["multi_post_on_annotated"] else None,
        },
        "gold_relations": gold_total,
        "gold_recovered": gold_hit,
        "micro": prf(correct, on_ann, gold_hit, gold_total),
        "per_relation": {r: dict(v) for r, v in per_rel.items()},
    }
    return out


def entity_coverage(
    post_mentions: Mapping[str, Iterable[tuple[Span, str]]], pairs: Sequence[GoldPair], mode: str = "exact"
) -> dict:
    """How many gold entities (of scored pairs) the graph has in their post, and how many gold
    test-relation pairs have both ends matched: the ceiling a relation stage can reach.

    ``post_mentions``: post id -> the post's ``MENTIONS`` as (span, entity name)."""
    keys = {pid: [tuple(span) if mode != "name" else name for span, name in ms] for pid, ms in post_mentions.items()}

    def hit(pid: str, g: Key) -> bool:
        return any(keys_match(k, g, mode) for k in keys.get(pid, ()))

    ents = {(p.post_id, s, k) for p in pairs if p.scope in ("test", "none") for s, k in zip(p.spans, p.keys(mode))}
    test_pairs = [p for p in pairs if p.scope == "test"]
    return {
        "mode": mode,
        "gold_entities": len(ents),
        "gold_entities_matched": sum(hit(pid, k) for pid, _, k in ents),
        "gold_test_pairs": len(test_pairs),
        "gold_test_pairs_both_matched": sum(all(hit(p.post_id, k) for k in p.keys(mode)) for p in test_pairs),
    }


# -------------------------------------------------------------------------------- Twitter-2017
def typed_gold_spans(tweet: Sequence[tuple[str, str]], text_offsets: Sequence[Span]) -> set[tuple[int, int, str]]:
    """(start, end, TYPE) of the BIO spans of a tweet, given each token's character span.

    Decodes exactly as ``bench.entity_detection.build_example`` does (an ``I-`` that opens a span
    is tolerated and starts one); the type is the opening tag's."""
    out, start, kind = set(), None, None
    for i, (_, tag) in enumerate(list(tweet) + [("", "O")]):
        if tag == "O" or tag.startswith("B-") or start is None:
            if start is not None:
                out.add((text_offsets[start][0], text_offsets[i - 1][1], kind))
                start = None
            if tag != "O":
                start, kind = i, tag[2:]
    return out


def example_spans(example) -> set[Span]:
    """The gold spans of a ``bench.entity_detection.build_example`` result (``spans``; ``gold`` in its
    older form)."""
    return set(example.spans if hasattr(example, "spans") else example.gold)


def written_offsets(tweet: Sequence[tuple[str, str]]) -> tuple[str, list[Span]]:
    """The text of a tweet as written (a lone ``@``/``#`` glued to the next token, as
    ``build_example(tweet, "tweet")`` does) and each token's character span in it."""
    from models.mention_tagger import written_offsets as joined

    return joined([token for token, _ in tweet])


def _prf_counts(tp: int, fp: int, fn: int) -> dict:
    return {**prf(tp, tp + fp, tp, tp + fn), "tp": tp, "fp": fp, "fn": fn}


def score_entities(predicted: Iterable[tuple[str, int, int, str]], gold: Iterable[tuple[str, int, int, str]],
                   types: Sequence[str] = COARSE_TYPES) -> dict:
    """Typed (exact span + type) and untyped (exact span) P/R/F1, and F1 per gold type.

    Items are ``(post_id, start, end, TYPE)`` with TYPE one of ``types`` (default ``COARSE_TYPES``); a gold TYPE
    may name two that are both right (``PER|ORG``): either is a hit, and a miss counts against both types' F1."""
    pred, gold = set(predicted), set(gold)
    pred_spans = {x[:3] for x in pred}
    gold_spans = {x[:3] for x in gold}
    right_types = {x[:3]: set(x[3].split("|")) for x in gold}
    hits = {x for x in pred if x[3] in right_types.get(x[:3], ())}
    found = {x for x in gold if any((*x[:3], t) in hits for t in x[3].split("|"))}
    per_type = {}
    for t in types:
        p_t = {x for x in pred if x[3] == t}
        g_t = {x for x in gold if t in x[3].split("|")}
        tp = len(p_t & hits)
        per_type[t] = _prf_counts(tp, len(p_t) - tp, len(g_t - found))
    return {
        "typed": _prf_counts(len(hits), len(pred - hits), len(gold - found)),
        "untyped": _prf_counts(len(pred_spans & gold_spans), len(pred_spans - gold_spans), len(gold_spans - pred_spans)),
        "per_type": per_type,
        "predicted": len(pred),
        "gold": len(gold),
    }
