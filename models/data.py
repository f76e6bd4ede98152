"""Zero-shot benchmark data: MNRE (relations) and WNUT-16 (entity types), split by class.

Protocols are those of ``shared/docs/mg-vmoe.md``: pool the original train/dev/test files, then split
the *classes* so that train, validation and test classes are disjoint. The research data is read from
``mmkg.settings.research_data_dir()`` and is never copied into the repository.

What this module must never do: look at test classes to choose anything. It only builds the splits.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmkg.settings import research_data_dir

MNRE_FILES = ("mnre_train.txt", "mnre_val.txt", "mnre_test.txt")
#: Labels that mean "no class at all": an MNRE pair with no relation, a WNUT mention of no listed type.
NO_CLASS = frozenset({"None", "other"})
#: MNRE relations that hold both ways (siblings, a couple, neighbours, peers, alumni of one school).
MNRE_SYMMETRIC = frozenset({"/per/per/siblings", "/per/per/couple", "/per/per/neighbor", "/per/per/peer",
                            "/per/per/alumi"})
#: Where the ``None`` pairs of each MNRE file go: trained on, validated on, tested on.
_NONE_PART = {"mnre_train.txt": "train_negatives", "mnre_val.txt": "negatives", "mnre_test.txt": "test_negatives"}
WNUT_FILES = ("train", "dev", "test")
#: Twitter-2017 (CoNLL-style PER/LOC/ORG/MISC over tweets): train, validation and test files.
TWITTER2017_FILES = ("train.txt", "valid.txt", "test.txt")

#: Two readers' Event / Product / Other labels of the MISC mentions of Twitter-2017 (MISC) and WNUT-16 (``other``;
#: on dev also product, movie, tvshow), each reader alone, from the post alone: ``misc-types-{part}.json`` and
#: ``misc-types-{part}.reader2.json``, guideline ``misc-types-guideline.md``. Part ``train`` (Twitter-2017 train,
#: WNUT-16 train) trains the typer (``tweets-all-types+events``); part ``dev`` (Twitter-2017 valid, WNUT-16 dev)
#: validates it and scores Event / Product in ``bench.graph_quality.event_product``.
MISC_TYPE_LABELS = Path(__file__).resolve().parent / "annotations"
#: A reader's label -> the training class, per label set of ``tweets-all-types+events``; a missing label
#: (WNUT-16 ``Other``) keeps the mention an abstention negative.
MISC_TYPE_CLASSES = {"twitter2017": {"Event": "EVENT", "Product": "PRODUCT", "Other": "MISC-OTHER"},
                     "wnut16": {"Event": "event", "Product": "product"}}
TWITTER2017_TYPES = ("PER", "LOC", "ORG", "MISC")
WNUT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("geo-loc", "musicartist", "movie"),
    ("person", "sportsteam", "product"),
    ("company", "facility", "tvshow"),
)


@dataclass(frozen=True)
class Sample:
    """One zero-shot example: a tokenised post, its marked span(s), its gold class, its image (or None).

    ``spans`` are word offsets [start, end): one span (the mention) for MET, two (head, tail) for MRE.
    """

    uid: str
    tokens: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    label: str
    image: str | None = None  # path to an image file that exists on this machine


@dataclass
class ClassSplit:
    """Samples and class lists of one zero-shot protocol instance (one split seed or one fold)."""

    name: str  # e.g. "mnre-seed0", "wnut16-fold1"
    task: str  # "met" | "mre"
    train_classes: list[str]
    val_classes: list[str]
    test_classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    protocol: str  # one line: how the split was made (stored in checkpoints and results)
    counts: dict = field(default_factory=dict)  # dropped/kept counters: nothing is lost silently
    #: Samples of no class at all, from the validation file (MNRE ``None`` pairs, WNUT ``other``
    #: mentions): early stopping and the abstention threshold see them beside the validation classes,
    #: so what to abstain on is chosen on validation data. Never trained on, never scored as a class.
    negatives: list[Sample] = field(default_factory=list)
    #: The same kind of samples from the train file: what abstention is *trained* on (MNRE ``None``
    #: pairs; used when the config asks for it, ``MGVMoEConfig.negatives_per_batch``).
    train_negatives: list[Sample] = field(default_factory=list)
    #: ... and from the test file: only ever scored, beside the test classes (``bench.zero_shot``).
    test_negatives: list[Sample] = field(default_factory=list)
    #: Classes whose head and tail may be swapped (MNRE ``/per/per/peer`` ...): a pair predicted in
    #: either order is right, and a reversed pair is no negative for them.
    symmetric: frozenset[str] = frozenset()
    #: Label sets annotated together, when the training classes come from several datasets: a training batch
    #: draws from one set and is scored against that set only, so a mention is never pushed away from another
    #: dataset's overlapping type (Twitter-2017 ``ORG`` against WNUT-16 ``sportsteam``). Empty: one set.
    train_groups: list[list[str]] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "name": self.name, "task": self.task, "protocol": self.protocol,
            "train_classes": self.train_classes, "val_classes": self.val_classes,
            "test_classes": self.test_classes,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test),
                      "negatives": len(self.negatives), "train_negatives": len(self.train_negatives),
                      "test_negatives": len(self.test_negatives)},
            "symmetric": sorted(self.symmetric),
            "counts": self.counts,
        }


def require_data_dir() -> Path:
    data = research_data_dir()
    if data is None:
        raise FileNotFoundError(
            "research data not found: set MMKG_DATA to the folder holding mnre/ and wnut16/ "
            "(see shared/README.md)"
        )
    return data


# ------------------------------------------------------------------------------------------------- MNRE
def read_mnre_file(data_dir: Path, name: str) -> list[dict]:
    """One MNRE file (``MNRE_FILES``) as dict records, one per non-blank line (``None`` relations kept)."""
    return [ast.literal_eval(line) for line in (data_dir / "mnre" / name).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def read_mnre(data_dir: Path | None = None) -> tuple[list[list[dict]], Counter]:
    """The three MNRE files as lists of dict records (``None`` relations kept; callers drop them)."""
    data_dir = data_dir or require_data_dir()
    files = [read_mnre_file(data_dir, name) for name in MNRE_FILES]
    return files, Counter(lines=sum(len(rows) for rows in files))


def mnre_relation_split(files: list[list[dict]], seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Relations in first-appearance order over train->val->test (``None`` dropped), shuffled with
    ``np.random.seed(seed)``; first 8 train, next 7 validation, last 7 test (as the reference)."""
    order: list[str] = []
    for rows in files:
        for r in rows:
            rel = r["relation"]
            if rel != "None" and rel not in order:
                order.append(rel)
    np.random.seed(seed)
    np.random.shuffle(order)
    return order[:8], order[8:15], order[15:]


def load_mnre(seed: int = 0, data_dir: Path | None = None) -> ClassSplit:
    data_dir = data_dir or require_data_dir()
    files, counts = read_mnre(data_dir)
    train_c, val_c, test_c = mnre_relation_split(files, seed)
    image_dir = data_dir / "mnre_images"
    where = {c: "train" for c in train_c} | {c: "val" for c in val_c} | {c: "test" for c in test_c}
    parts: dict[str, list[Sample]] = {"train": [], "val": [], "test": [], "negatives": [], "train_negatives": [],
                                      "test_negatives": []}
    for file_name, rows in zip(MNRE_FILES, files):
        for i, r in enumerate(rows):
            img = image_dir / r["img_id"]
            has_img = img.is_file()
            counts["with_image" if has_img else "without_image"] += 1
            parts[_NONE_PART[file_name] if r["relation"] == "None" else where[r["relation"]]].append(
                Sample(
                    uid=f"mnre/{file_name}:{i}",
                    tokens=tuple(r["token"]),
                    spans=(tuple(r["h"]["pos"]), tuple(r["t"]["pos"])),
                    label=r["relation"],
                    image=str(img) if has_img else None,
                )
            )
    return ClassSplit(
        name=f"mnre-seed{seed}", task="mre", train_classes=train_c, val_classes=val_c, test_classes=test_c,
        **parts,
        protocol=(f"MNRE v2 pooled train/val/test relations; None pairs kept per file (train: training negatives, "
                  f"val: validation negatives, test: test negatives); relations in first-appearance order, "
                  f"np.random.seed({seed}) shuffle, 8 train / 7 val / 7 test"),
        counts=dict(counts), symmetric=MNRE_SYMMETRIC,
    )


# ------------------------------------------------------------------------------------------------ WNUT
def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    """Sentences of a token<TAB>tag file (blank line between sentences)."""
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        tok, _, tag = line.rpartition("\t")
        tokens.append(tok)
        tags.append(tag.strip())
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def bio_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """BIO tags -> (start, end, type) word spans; a stray I- starts a new span (counted as BIO repair)."""
    spans, start, kind = [], None, None
    for i, tag in enumerate(tags + ["O"]):
        if tag.startswith("B-") or tag == "O" or (tag.startswith("I-") and tag[2:] != kind):
            if start is not None:
                spans.append((start, i, kind))
            start, kind = (i, tag[2:]) if tag != "O" else (None, None)
    return spans


def load_wnut_mentions(data_dir: Path | None = None) -> tuple[list[Sample], Counter, list[Sample]]:
    """Every typed mention of the pooled WNUT-16 files as one MET sample; ``other`` dropped, except
    the dev file's, returned third as negatives (``ClassSplit.negatives``)."""
    data_dir = data_dir or require_data_dir()
    samples, counts, negatives = [], Counter(), []
    for name in WNUT_FILES:
        for s_i, (tokens, tags) in enumerate(read_conll(data_dir / "wnut16" / name)):
            counts["tweets"] += 1
            for start, end, kind in bio_spans(tags):
                sample = Sample(f"wnut16/{name}:{s_i}:{start}-{end}", tuple(tokens), ((start, end),), kind)
                if kind == "other" and name == "dev":
                    negatives.append(sample)
                elif kind == "other":
                    counts["dropped_other"] += 1
                else:
                    counts["mentions"] += 1
                    samples.append(sample)
    return samples, counts, negatives


def load_wnut_fold(fold: int, data_dir: Path | None = None) -> ClassSplit:
    """Fold k (1..3) trains on G_k, validates on G_(k+1), tests on G_(k+2)."""
    if fold not in (1, 2, 3):
        raise ValueError("WNUT-16 fold must be 1, 2 or 3")
    samples, counts, negatives = load_wnut_mentions(data_dir)
    g = [list(WNUT_GROUPS[(fold - 1 + k) % 3]) for k in range(3)]
    by = lambda classes: [s for s in samples if s.label in classes]  # noqa: E731
    return ClassSplit(
        name=f"wnut16-fold{fold}", task="met", train_classes=g[0], val_classes=g[1], test_classes=g[2],
        train=by(g[0]), val=by(g[1]), test=by(g[2]),
        protocol=(f"WNUT-16 pooled train/dev/test mentions, 'other' dropped; fold {fold}: "
                  f"train G{fold}, val G{fold % 3 + 1}, test G{(fold + 1) % 3 + 1}"),
        counts=dict(counts), negatives=negatives,
    )


def read_twitter2017(path: Path) -> list[tuple[list[str], list[str]]]:
    """Sentences of a Twitter-2017 file; its ``IMGID:`` lines name the image, they are not tokens."""
    sentences = []
    for tokens, tags in read_conll(path):
        keep = [k for k, (tok, tag) in enumerate(zip(tokens, tags))
                if not (tok.startswith("IMGID:") or tag.startswith("IMGID:"))]
        if keep:
            sentences.append(([tokens[k] for k in keep], [tags[k] for k in keep]))
    return sentences


def detector_false_positives(sentences: list[tuple[list[str], list[str]]], tagger) -> list[list[tuple[int, int]]]:
    """Per sentence, the word spans the mention ``tagger`` (``models.mention_tagger``, the pipeline's detector)
    proposes on the post as written that are no gold mention: what the typer should abstain on. A proposed
    character span becomes the words inside it; one covering no whole word is skipped."""
    from models.mention_tagger import written_offsets

    written = [written_offsets(tokens) for tokens, _ in sentences]
    predicted = tagger.predict([text for text, _ in written])
    out = []
    for (tokens, tags), (_, offsets), spans in zip(sentences, written, predicted):
        gold = {(a, b) for a, b, _ in bio_spans(tags)}
        words = set()
        for a, b in spans:
            inside = [k for k, (s, e) in enumerate(offsets) if a <= s and e <= b]
            if inside and (inside[0], inside[-1] + 1) not in gold:
                words.add((inside[0], inside[-1] + 1))
        out.append(sorted(words))
    return out


def misc_type_labels(part: str) -> dict[object, tuple[str, ...]]:
    """The readers' labels of ``part`` (``train`` or ``dev``), in reader order, by mention: the training
    ``Sample.uid`` (train), or (post_id, start, end) of the dev sets' posts as written (dev)."""
    out: dict = {}
    for path in (MISC_TYPE_LABELS / f"misc-types-{part}.json", MISC_TYPE_LABELS / f"misc-types-{part}.reader2.json"):
        for x in json.loads(path.read_text())["labels"]:
            key = x["sample"] if "sample" in x else (x["post_id"], x["start"], x["end"])
            out.setdefault(key, []).append(x["label"])
    return {k: tuple(v) for k, v in out.items()}


def agreed_label(said: tuple[str, ...] | None) -> str | None:
    """The readers' label where both gave one and agree, else None."""
    return said[0] if said and len(said) == 2 and said[0] == said[1] else None


def _misc_typed(samples: list[Sample], labels: dict, classes: dict[str, str], key) -> tuple[list[Sample], Counter]:
    """``samples`` with each MISC-like mention given its agreed reader label's class; a mention without one (no
    agreement, or a label ``classes`` leaves out) is left out, and counted."""
    out, counts = [], Counter()
    for s in samples:
        kind = classes.get(agreed_label(labels.get(key(s))) or "")
        counts[kind or "left_out"] += 1
        if kind:
            out.append(Sample(s.uid, s.tokens, s.spans, kind, s.image))
    return out, counts


def tweet_post_id(corpus: str, part: str, index: int) -> str:
    """The post id the benchmarks give tweet ``index`` of a NER file (``twitter2017``/``wnut16``, ``valid``...):
    ``tw17-valid-0042``; the dev labels' key."""
    return f"{'tw17' if corpus == 'twitter2017' else corpus}-{part}-{index:04d}"


def _dev_key(sample: Sample) -> tuple[str, int, int]:
    """A Twitter-2017 valid sample -> its key in the dev labels: post id and character span as written."""
    from models.mention_tagger import written_offsets

    _, offsets = written_offsets(list(sample.tokens))
    (a, b), = sample.spans
    return tweet_post_id("twitter2017", "valid", int(sample.uid.split(":")[1])), offsets[a][0], offsets[b - 1][1]


#: MNRE's relation signatures name the types of their arguments (``/per/org/member_of``: a person, an organization);
#: these three are Twitter-2017's types (``misc`` is left out: its arguments are events, awards, nationalities ...).
MNRE_ARGUMENT_TYPES = {"per": "PER", "org": "ORG", "loc": "LOC"}


def mnre_typed_mentions(data_dir: Path | None = None,
                        kinds: tuple[str, ...] = tuple(MNRE_ARGUMENT_TYPES)) -> tuple[list[Sample], Counter]:
    """Typed mentions read off MNRE *train*'s relation pairs (distant supervision, ``tweets-all-types+events+mnre``):
    the head and tail of every pair with a relation take the types its signature names (``MNRE_ARGUMENT_TYPES``),
    one sample per distinct (post, span); a span two signatures type differently is left out. ``None`` pairs say
    nothing of their arguments' types and are not read, nor are MNRE's validation and test files (the relation
    benchmarks' and the graph-quality headline's). ``kinds``: the signature types kept (``("per", "loc")``: people
    and places only, ``+mnre-per-loc``); a span typed two ways is left out whichever of them are kept."""
    data_dir = data_dir or require_data_dir()
    rows = read_mnre_file(data_dir, MNRE_FILES[0])
    image_dir = data_dir / "mnre_images"
    seen: dict[tuple, tuple[int, set[str]]] = {}
    for i, r in enumerate(rows):
        if r["relation"] in NO_CLASS:
            continue
        _, head, tail, _ = r["relation"].split("/")
        for side, kind in (("h", head), ("t", tail)):
            if kind in MNRE_ARGUMENT_TYPES:
                key = (tuple(r["token"]), tuple(r[side]["pos"]))
                seen.setdefault(key, (i, set()))[1].add(MNRE_ARGUMENT_TYPES[kind])
    samples, counts = [], Counter()
    for (tokens, span), (i, typed) in seen.items():
        if len(typed) > 1:
            counts["mnre_train_mentions_typed_two_ways"] += 1
            continue
        if not typed <= {MNRE_ARGUMENT_TYPES[k] for k in kinds}:
            continue
        img = image_dir / rows[i]["img_id"]
        samples.append(Sample(f"mnre/{MNRE_FILES[0]}:{i}:{span[0]}-{span[1]}", tokens, (span,), next(iter(typed)),
                              image=str(img) if img.is_file() else None))
    counts.update(f"mnre_train_{s.label}" for s in samples)
    return samples, counts


def load_all_types(data_dir: Path | None = None, tagger=None, misc_types: bool = False,
                   mnre_types: tuple[str, ...] = ()) -> ClassSplit:
    """The shipped entity typer's split (issue 10): every labelled type there is, since the typer's job in
    production is to transfer to the user's types. Trains on the *train* files only — WNUT-16 train (its 9
    types; ``other`` mentions are abstention negatives) and Twitter-2017 train (PER/LOC/ORG/MISC) — as two
    label sets (``train_groups``); early stopping and the threshold on Twitter-2017 *valid* (tweets of the
    kind the pipeline types). With a mention ``tagger``, its false positives on each file are no-class samples
    (``detector_false_positives``): train's may teach abstention, valid's calibrate the threshold. (Capitalised
    non-entity spans as negatives were tried and made the threshold far too strict: docs/model.md.) The dev/test files of WNUT-16 and Twitter-2017's test file are never read, so
    both stay held out for end-to-end tests. Not a zero-shot split: the fold protocol measures transfer.

    ``misc_types`` (``tweets-all-types+events``): the MISC-like mentions typed by ``MISC_TYPE_LABELS``' readers
    where they agree. Twitter-2017 MISC becomes EVENT, PRODUCT or MISC-OTHER (train) and EVENT or PRODUCT
    (valid: its few others and disagreements are left out, so validation scores the two); WNUT-16 train's
    ``other`` becomes ``event`` or ``product``, the rest stay abstention negatives.

    ``mnre_types`` (``+mnre``: per, org, loc; ``+mnre-per-loc``: per, loc): MNRE train's relation arguments of
    those signature types as PER / ORG / LOC mentions too (``mnre_typed_mentions``), trained with Twitter-2017's
    label set."""
    data_dir = data_dir or require_data_dir()
    counts: Counter = Counter()
    wnut, negatives = [], []
    for s_i, (tokens, tags) in enumerate(read_conll(data_dir / "wnut16" / "train")):
        for start, end, kind in bio_spans(tags):
            sample = Sample(f"wnut16/train:{s_i}:{start}-{end}", tuple(tokens), ((start, end),), kind)
            (negatives if kind == "other" else wnut).append(sample)
    parts: dict[str, list[Sample]] = {}
    false_positives: dict[str, list[Sample]] = {}
    for name in TWITTER2017_FILES[:2]:
        sentences = read_twitter2017(data_dir / "twitter2017" / name)
        parts[name] = [Sample(f"twitter2017/{name}:{s_i}:{start}-{end}", tuple(tokens), ((start, end),), kind)
                       for s_i, (tokens, tags) in enumerate(sentences) for start, end, kind in bio_spans(tags)]
        fps = detector_false_positives(sentences, tagger) if tagger is not None else [[] for _ in sentences]
        false_positives[name] = [Sample(f"twitter2017/{name}:{s_i}:{a}-{b}:fp", tuple(sentences[s_i][0]), ((a, b),),
                                        "None") for s_i, spans in enumerate(fps) for a, b in spans]
    if misc_types:
        train_labels, dev_labels = misc_type_labels("train"), misc_type_labels("dev")
        typed, _ = _misc_typed(negatives, train_labels, MISC_TYPE_CLASSES["wnut16"], lambda s: s.uid)
        typed_ids = {t.uid for t in typed}
        negatives = [s for s in negatives if s.uid not in typed_ids]  # the rest stay abstention negatives
        wnut += typed
        counts["wnut16_train_other_typed_by_readers"] = len(typed)
        for name, labels, classes, key in (
                ("train.txt", train_labels, MISC_TYPE_CLASSES["twitter2017"], lambda s: s.uid),
                ("valid.txt", dev_labels, {k: v for k, v in MISC_TYPE_CLASSES["twitter2017"].items() if k != "Other"},
                 _dev_key)):
            misc, kept = _misc_typed([s for s in parts[name] if s.label == "MISC"], labels, classes, key)
            parts[name] = [s for s in parts[name] if s.label != "MISC"] + misc
            counts.update({f"twitter2017_{name.split('.')[0]}_misc_{k}": n for k, n in kept.items()})
    if mnre_types:
        mnre, mnre_counts = mnre_typed_mentions(data_dir, mnre_types)
        parts["train.txt"] = parts["train.txt"] + mnre
        counts.update(mnre_counts)
    wnut_types = sorted({s.label for s in wnut})
    twitter_order = TWITTER2017_TYPES + tuple(MISC_TYPE_CLASSES["twitter2017"].values())
    twitter_types = [t for t in twitter_order if any(s.label == t for s in parts["train.txt"])]
    val_types = [t for t in twitter_order if any(s.label == t for s in parts["valid.txt"])]
    counts.update({"wnut16_train_mentions": len(wnut), "wnut16_train_other": len(negatives),
                   "twitter2017_train_mentions": len(parts["train.txt"]),
                   "twitter2017_valid_mentions": len(parts["valid.txt"]),
                   "twitter2017_train_detector_false_positives": len(false_positives["train.txt"]),
                   "twitter2017_valid_detector_false_positives": len(false_positives["valid.txt"])})
    return ClassSplit(
        name="tweets-all-types", task="met", train_classes=wnut_types + twitter_types, val_classes=val_types,
        test_classes=[], train=wnut + parts["train.txt"], val=parts["valid.txt"], test=[],
        protocol=("all labelled entity types: WNUT-16 train (9 types; 'other' as abstention negatives) + "
                  "Twitter-2017 train (PER/LOC/ORG/MISC), two label sets; validation Twitter-2017 valid; "
                  "WNUT-16 dev/test and Twitter-2017 test unread"
                  + ("; MISC mentions typed by two readers where they agree (models/annotations): Twitter-2017 "
                     "MISC -> EVENT/PRODUCT/MISC-OTHER (valid: EVENT/PRODUCT), WNUT-16 train other -> event/product"
                     if misc_types else "")
                  + (f"; MNRE train's relation arguments typed by their signature ({'/'.join(mnre_types)}) with "
                     "Twitter-2017's label set" if mnre_types else "")),
        counts=dict(counts), train_negatives=negatives + false_positives["train.txt"],
        negatives=false_positives["valid.txt"], train_groups=[wnut_types, twitter_types],
    )


#: ``mnre-pipeline-wide``: how many of the seed-0 split's 7 validation relations are trained on (the rest validate).
WIDE_TRAINED_VAL_RELATIONS = 4


def wide_relation_split(train_classes: list[str], val_classes: list[str]) -> tuple[list[str], list[str]]:
    """(trained, validating) relations of ``mnre-pipeline-wide``: the train relations plus the first
    ``WIDE_TRAINED_VAL_RELATIONS`` validation relations (split order), and the other validation relations."""
    return train_classes + val_classes[:WIDE_TRAINED_VAL_RELATIONS], val_classes[WIDE_TRAINED_VAL_RELATIONS:]


#: The word that hides a mention's name in ``masked_mentions`` (the text encoder's mask token; MiniLM's vocabulary
#: has it as a special token, so it is never split or lower-cased).
MASK_WORD = "[MASK]"
#: ``+masked``: the share of training mentions that are also trained on with their name hidden; fixed before the run
#: that measured it (README, *Model*), not tuned.
MASKED_MENTION_SHARE = 0.3


def masked_mentions(samples: list[Sample], share: float = MASKED_MENTION_SHARE) -> list[Sample]:
    """Copies of a deterministic ``share`` of the MET ``samples`` (chosen by a hash of each uid, so a rerun picks the
    same ones) with every word of the mention replaced by ``MASK_WORD``: the post around it is all the copy has, so
    training on both teaches the typer the context's evidence ("captain of the ___", "born in ___"), which a new name
    in production needs. Same label, same image, uid ``<uid>:masked``."""
    out = []
    for s in samples:
        if int(hashlib.sha256(s.uid.encode()).hexdigest()[:8], 16) / 0x100000000 < share:
            (a, b), = s.spans
            out.append(Sample(f"{s.uid}:masked", s.tokens[:a] + (MASK_WORD,) * (b - a) + s.tokens[b:], s.spans,
                              s.label, s.image))
    return out


def load_split(name: str, data_dir: Path | None = None) -> ClassSplit:
    """``mnre`` / ``mnre-seedN`` / ``mnre-pipeline[-wide]`` / ``mnre-all-relations`` / ``wnut16-foldK`` /
    ``wnut16-pipeline`` / ``tweets-all-types`` -> ClassSplit; an entity split's name with ``+masked`` adds
    ``masked_mentions`` of its training mentions."""
    if name.endswith("+masked"):
        # the split, with a share of its training mentions also trained on with the name hidden (``masked_mentions``)
        split = load_split(name.removesuffix("+masked"), data_dir)
        if split.task != "met":
            raise ValueError(f"+masked hides entity mentions: {name!r} is not an entity typing split")
        masked = masked_mentions(split.train)
        split.name, split.train = name, split.train + masked
        split.counts = {**split.counts, "train_mentions_masked_copies": len(masked)}
        split.protocol += f"; {MASKED_MENTION_SHARE:.0%} of the training mentions also with the name hidden ({MASK_WORD})"
        return split
    if name in ("tweets-all-types", "tweets-all-types+fp", "tweets-all-types+events", "tweets-all-types+events+mnre",
                "tweets-all-types+events+mnre-per-loc"):
        # "+fp": the shipped mention tagger's false positives as no-class samples; "+events": the readers'
        # Event / Product labels of the MISC mentions (``load_all_types(misc_types=True)``); "+mnre": MNRE
        # train's relation arguments typed by their signature (``mnre_typed_mentions``; "-per-loc": people and places)
        tagger = None
        if name.endswith("+fp"):
            from models.mention_tagger import DEFAULT_MENTION_CHECKPOINT, load_tagger

            tagger, _ = load_tagger(DEFAULT_MENTION_CHECKPOINT)
        mnre = {"+mnre": ("per", "org", "loc"), "+mnre-per-loc": ("per", "loc")}
        split = load_all_types(data_dir, tagger, misc_types="+events" in name,
                               mnre_types=next((v for k, v in mnre.items() if name.endswith(k)), ()))
        split.name = name
        return split
    if name == "mnre":
        return load_mnre(0, data_dir)
    if name.startswith("mnre-seed"):
        return load_mnre(int(name.removeprefix("mnre-seed")), data_dir)
    if name.startswith("wnut16-fold"):
        return load_wnut_fold(int(name.removeprefix("wnut16-fold")), data_dir)
    if name == "wnut16-pipeline":
        # The shipped entity typer: the most types we can train on (G1+G2), G3 kept for early stopping
        # and threshold calibration; nothing is held out as test (the benchmark folds measure transfer).
        samples, counts, negatives = load_wnut_mentions(data_dir)
        train_c = list(WNUT_GROUPS[0] + WNUT_GROUPS[1])
        val_c = list(WNUT_GROUPS[2])
        return ClassSplit(
            name=name, task="met", train_classes=train_c, val_classes=val_c, test_classes=[],
            train=[s for s in samples if s.label in train_c], val=[s for s in samples if s.label in val_c],
            test=[], protocol="WNUT-16 pooled mentions, 'other' dropped; train G1+G2, val G3, no test",
            counts=dict(counts), negatives=negatives,
        )
    if name == "mnre-pipeline":
        split = load_mnre(0, data_dir)
        split.name, split.protocol = name, split.protocol + " (test samples unused)"
        split.test, split.test_negatives = [], []
        return split
    if name == "mnre-all-relations":
        return load_mnre_all_relations(data_dir)
    if name == "mnre-pipeline-wide":
        # More seen relations for the relation checkpoint (``wide_relation_split``): some validation relations
        # are trained on, the others stay unseen, for early stopping and the threshold; test relations stay unread.
        split = load_split("mnre-pipeline", data_dir)
        trained, validating = wide_relation_split(split.train_classes, split.val_classes)
        moved = trained[len(split.train_classes):]
        split.name = name
        split.protocol += (f"; the validation relations {moved} trained on as well, the other {len(validating)} kept "
                           "for early stopping and calibration")
        split.train = split.train + [s for s in split.val if s.label in moved]
        split.val = [s for s in split.val if s.label not in moved]
        split.train_classes, split.val_classes = trained, validating
        return split
    raise ValueError(f"unknown split {name!r}")


def load_mnre_all_relations(data_dir: Path | None = None) -> ClassSplit:
    """The shipped relation checkpoint's split: every MNRE relation there is, as ``tweets-all-types`` is for types,
    since the checkpoint's job in production is the user's relations, and most relations a user writes first
    (member of, lives in, located in, takes part in, peer) have MNRE counterparts. Trains on the *train* file's
    related pairs of every relation and its ``None`` pairs; early stopping and the threshold on the *validation*
    file's pairs and ``None`` pairs (its own mix, the mix posts hold); the test file is never read. Not a zero-shot
    split: the class-split seeds (``mnre-seedN``, and ``mnre-pipeline`` for the end-to-end benchmark) measure
    transfer to relations never trained on."""
    data_dir = data_dir or require_data_dir()
    files, counts = read_mnre(data_dir)
    image_dir = data_dir / "mnre_images"
    parts: dict[str, list[Sample]] = {"train": [], "val": [], "negatives": [], "train_negatives": []}
    for file_name, rows in zip(MNRE_FILES[:2], files[:2]):
        for i, r in enumerate(rows):
            img = image_dir / r["img_id"]
            part = (_NONE_PART[file_name] if r["relation"] == "None"
                    else "train" if file_name == MNRE_FILES[0] else "val")
            parts[part].append(Sample(uid=f"mnre/{file_name}:{i}", tokens=tuple(r["token"]),
                                      spans=(tuple(r["h"]["pos"]), tuple(r["t"]["pos"])), label=r["relation"],
                                      image=str(img) if img.is_file() else None))
    relations = list(dict.fromkeys(s.label for s in parts["train"]))
    unseen = sorted({s.label for s in parts["val"]} - set(relations))
    if unseen:
        raise ValueError(f"relations in the MNRE validation file but not in its train file: {unseen}")
    counts.update({"train_related": len(parts["train"]), "train_none": len(parts["train_negatives"]),
                   "val_related": len(parts["val"]), "val_none": len(parts["negatives"])})
    return ClassSplit(
        name="mnre-all-relations", task="mre", train_classes=relations,
        val_classes=[c for c in relations if any(s.label == c for s in parts["val"])], test_classes=[],
        train=parts["train"], val=parts["val"], test=[], protocol=(
            "all MNRE relations: the train file's related and None pairs for training; the validation file's for "
            "early stopping and calibration; the test file unread"),
        counts=dict(counts), negatives=parts["negatives"], train_negatives=parts["train_negatives"],
        symmetric=MNRE_SYMMETRIC)


def validation_file_samples(split: ClassSplit) -> list[Sample]:
    """The validation samples that come from the validation *file* (MNRE ``mnre_val.txt``): beside that file's
    ``None`` pairs (the split's ``negatives``) they are the mix of related and unrelated pairs that posts as they
    come hold (about 3 ``None`` pairs per related pair), where the pooled validation relations of all three files
    hold 0.3. Other splits: all validation samples."""
    if split.task != "mre":
        return list(split.val)
    return [s for s in split.val if s.uid.startswith(f"mnre/{MNRE_FILES[1]}:")]


def samples_fingerprint(samples: list[Sample]) -> str:
    """Content hash of a sample list: keys feature caches and is written into checkpoints."""
    h = hashlib.sha256()
    for s in samples:
        h.update(repr((s.uid, s.tokens, s.spans, s.label, s.image is not None)).encode())
    return h.hexdigest()[:16]
