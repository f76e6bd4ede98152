"""Typed records passed between the stages of ingestion.

Identities are deterministic: a post is its ``id``, an image is the SHA-256 of its bytes, a
mention is (post id, character span). Re-running any stage over the same input yields the same
records, which is what makes re-runs and backfills idempotent downstream.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

#: A retweet's header: ``RT @handle`` opening the post (``RT @CNN: ...``, tokenised ``RT @CNN : ...``).
_RETWEET_HEADER = re.compile(r"\s*RT\s+@(\w+)")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One image attached to a post, after validation.

    ``sha256`` and ``path`` are None when the image could not be used; ``status`` then says why
    (the post keeps its text, the image is marked missing).
    """

    uri: str  # as written in the post
    status: str  # "ok" | "missing" | "corrupt" | "oversized" | "outside_landing" | "fetch_failed" | ...
    sha256: str | None = None
    path: str | None = None  # local file holding the validated bytes
    width: int | None = None
    height: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class Post:
    id: str
    text: str
    created_at: str  # ISO-8601 with zone, normalised to UTC
    author: str | None = None
    lang: str | None = None
    source: str | None = None
    images: tuple[ImageRef, ...] = ()

    @property
    def image(self) -> ImageRef | None:
        """The first usable image, the one the model looks at."""
        return next((im for im in self.images if im.ok), None)

    @property
    def retweet_source(self) -> tuple[int, int] | None:
        """Character span of the ``@handle`` (sign included) a retweet opens with: the account whose post this
        one repeats, i.e. who said it, not what it says something about (``None`` when the post is no retweet)."""
        m = _RETWEET_HEADER.match(self.text)
        return (m.start(1) - 1, m.end(1)) if m else None

    def is_retweet_source(self, start: int, end: int) -> bool:
        """Whether the span ``[start, end)`` lies within the retweet header's handle (``retweet_source``)."""
        span = self.retweet_source
        return span is not None and span[0] <= start and end <= span[1]


@dataclass(frozen=True, slots=True)
class Mention:
    """A detected entity mention: a character span of a post's text."""

    post_id: str
    start: int  # character offset, inclusive
    end: int  # character offset, exclusive
    text: str
    detector: str  # "spacy", "hashtag", "handle", ...
    ner_label: str | None = None  # the detector's own coarse label, if any

    @property
    def id(self) -> str:
        return hashlib.sha1(f"{self.post_id}\x1f{self.start}\x1f{self.end}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TypedMention:
    mention: Mention
    entity_type: str  # a name from the ontology, or OTHER_TYPE when the model abstains
    score: float
    model_version: str
    label_set_id: str


@dataclass(frozen=True, slots=True)
class RelationMention:
    """A relation between two mentions of the same post."""

    post_id: str
    head: TypedMention
    tail: TypedMention
    relation: str  # a name from the ontology
    score: float
    model_version: str
    label_set_id: str


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A rejected input record, kept with its reason and the original payload."""

    source: str  # file (and line) the record came from
    reason: str
    payload: str
    post_id: str | None = None
    details: dict = field(default_factory=dict)


#: Entity type assigned when the typer abstains (score under the calibrated threshold).
OTHER_TYPE = "Other"
