"""Deterministic entity identity, shared by the stages that decide types (``extraction``) and the loader
that keys nodes by it (``kg_loader``).

An entity is (normalised name, entity type). The id is a hash of both, so the same entity
mentioned in any post, in any run or backfill, lands on the same node; surface forms are kept
as aliases. Normalisation (documented in the README):

1. invisible characters are removed (soft hyphen, zero-width space, ZWNJ, ZWJ, word joiner, BOM,
   and the bidirectional marks and controls: LRM, RLM, ALM, embeddings, overrides, isolates), so
   ``Mar\u200bta`` and ``Marta`` are one entity; then Unicode NFKC (full-width letters, ligatures
   and compatibility forms fold together);
2. a leading ``#`` (hashtag) or ``@`` (handle) is dropped, and a CamelCase tag is split into words
   (``#LisbonFalcons`` -> ``Lisbon Falcons``, ``#NBAAwards`` -> ``NBA Awards``), so a hashtag and
   the plain name land on the same entity;
3. surrounding punctuation, quotes and whitespace are stripped; inner whitespace runs become one space;
4. case-folded (``casefold``, stronger than ``lower`` for non-English text).

A surface that strips to nothing (``@__``, ``"..."``) keeps its casefolded NFKC form instead
(``@__``), so no entity is ever nameless; detection does not take such spans as mentions anyway.

Other spelling differences ("Aurora Fest" vs "Aurora Festival") stay different entities: merging
them would need entity linking, which this function must never guess at.

One such difference is read as the same *name* where it is read at all: a one-word tag or handle that spells a
full name (``spells``: ``@martasilva9`` and "Marta Silva"). Entity resolution proposes the pair for a merge
(``kg_loader.resolution``), and a post that names both decides the tag's type with the name's mentions
(``typing_keys``); the two stay two entities until a person accepts the merge.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence

_WS = re.compile(r"\s+")
_TOKEN = re.compile(r"[^\W\d_]+|\d+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_EDGE_PUNCT = "\"'`.,;:!?()[]{}<>«»“”‘’…-–—_*~|/\\"


#: Characters that change nothing a reader sees in a name (removed before NFKC, which keeps them).
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def without_invisible(text: str) -> str:
    """``text`` without the characters a reader cannot see (zero-width space, soft hyphen, bidi marks...)."""
    return _INVISIBLE.sub("", text)


def normalize_name(surface: str) -> str:
    visible = unicodedata.normalize("NFKC", without_invisible(surface)).strip()
    name = visible
    if name[:1] in ("#", "@"):
        name = _CAMEL.sub(" ", name[1:])
    name = _WS.sub(" ", name).strip().strip(_EDGE_PUNCT).strip()
    if not name:  # only signs and punctuation: keep them rather than give a nameless entity
        name = _WS.sub(" ", visible)
    return name.casefold()


def entity_id(surface_or_name: str, entity_type: str) -> str:
    """32 hex chars of SHA-256 over (type, normalised name)."""
    key = f"{entity_type}\x1f{normalize_name(surface_or_name)}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def identity_surface(mention, texts: Mapping[str, str] | None = None) -> str:
    """The string an entity's identity is computed from: the mention's text, with the ``#``/``@``
    in front of it when the post has one there (detectors keep a hashtag's span without its sign), so
    ``#LisbonFalcons`` and "Lisbon Falcons" normalise to the same name."""
    text = texts.get(mention.post_id) if texts else None
    if text and mention.start > 0 and text[mention.start - 1] in "#@" and not mention.text.startswith(("#", "@")):
        return text[mention.start - 1] + mention.text
    return mention.text


def entity_name(mention, texts: Mapping[str, str] | None = None) -> str:
    """The normalised name a mention's entity gets (``normalize_name`` of its ``identity_surface``)."""
    return normalize_name(identity_surface(mention, texts))


def name_tokens(name: str) -> tuple[str, ...]:
    """Words of a normalised name: letters and digit runs (``kofi_runs`` -> ``kofi``, ``runs``)."""
    return tuple(_TOKEN.findall(name.casefold()))


def compact(name: str) -> str:
    """The name without spaces or punctuation: ``aurora fest`` and ``aurorafest`` -> ``aurorafest``."""
    return "".join(name_tokens(name))


#: Shortest full name, compacted, that a tag or handle is read as spelling (``kofi`` in ``@kofi_runs`` is a word
#: of a name, not the name).
MIN_SPELLED_NAME = 6


def spells(tag: str, name: str) -> bool:
    """Whether the one-word normalised name ``tag`` (a handle or tag: ``martasilva9``) holds the whole of the
    normalised name ``name`` of two or more words (``marta silva``), spaces and punctuation dropped."""
    full = compact(name)
    return " " not in tag and " " in name and len(full) >= MIN_SPELLED_NAME and full in compact(tag)


def typing_keys(post_ids: Sequence[str], names: Sequence[str]) -> list[str]:
    """The key under which each mention's type is decided (``extraction.zero_shot.agree_on_types``): its
    normalised entity name (``names``), except for a one-word name (a handle or tag) that ``spells`` a full name
    mentioned in the same post (``post_ids``), and only one such name over all the posts given: every mention
    of it, in any of those posts, is decided with that full name's mentions. So ``@martasilva9`` next to "Marta
    Silva" is typed as she is, not as its letters alone suggest, and keeps one type wherever it appears. Its
    entity stays its own (the id hashes its own name); resolution proposes the merge."""
    by_post: dict[str, set[str]] = {}
    for post_id, name in zip(post_ids, names, strict=True):
        by_post.setdefault(post_id, set()).add(name)
    spelled: dict[str, set[str]] = {}
    for post_names in by_post.values():
        for name in post_names:
            if " " not in name:
                spelled.setdefault(name, set()).update(other for other in post_names if spells(name, other))
    alias = {name: full.pop() for name, full in spelled.items() if len(full) == 1}
    return [alias.get(name, name) for name in names]
