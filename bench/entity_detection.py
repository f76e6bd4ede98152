"""Entity detection benchmark on Twitter-2017 (Zhang et al., AAAI 2018; text side as released by
Yu et al., ACL 2020 "UMT"): exact span match, entity types ignored.

Compares (a) plain spaCy ``en_core_web_sm`` (its entity-like labels, ``DEFAULT_LABELS``) with (b)
``extraction.detection.EntityDetector``. Usage, from the repository root:

    python -m bench.entity_detection            # dev ablation (valid + train), then test once
    python -m bench.entity_detection --dev-only # development: never reads test.txt

Data: ``<research data>/twitter2017/{train,valid,test}.txt`` (``IMGID:`` line, then
``token<TAB>BIO tag`` lines; ``mmkg.settings.research_data_dir()``, env ``MMKG_DATA``). Skips with
a message, exit status 0, when the data is absent.

Text construction. The corpus is tokenised, and it splits ``@user`` / ``#tag`` into the sigil and
the name, annotating only the name. Two texts are built per tweet, gold spans mapped to character
offsets in each:

- ``tweet``: tokens joined with single spaces, except that a lone ``@`` / ``#`` token is glued to
  the next token again (``#Nashville``), as the post was written; this is what the detector sees
  in production, and the headline number;
- ``tokens``: every token joined with single spaces (``# Nashville``), the plain protocol.

The rule ablation (each rule of ``RULES`` removed in turn) runs on the dev splits only; the test
split is scored once, for the final configuration. Writes ``bench/results/entity_detection.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from extraction.detection import (
    DEFAULT_LABELS,
    DEFAULT_RULES,
    DEFAULT_SPACY_MODEL,
    RULES,
    EntityDetector,
    spacy_view,
)
from mmkg.settings import research_data_dir

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEV_SPLITS = ("valid", "train")
TEXT_FORMS = ("tweet", "tokens")


@dataclass(frozen=True)
class Example:
    text: str
    gold: frozenset[tuple[int, int]]


def read_conll(path: Path) -> list[list[tuple[str, str]]]:
    """Tweets of a Twitter-2017 file as lists of (token, BIO tag)."""
    tweets: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("IMGID:") or not line.strip():
            if current:
                tweets.append(current)
            current = []
            continue
        token, tag = line.split("\t")
        current.append((token, tag))
    if current:
        tweets.append(current)
    return tweets


def build_example(tweet: list[tuple[str, str]], form: str) -> Example:
    """The text of one tweet in ``form`` and its gold spans as character offsets."""
    text, offsets = "", []
    for i, (token, _) in enumerate(tweet):
        glued = form == "tweet" and i > 0 and tweet[i - 1][0] in ("@", "#")
        if i > 0 and not glued:
            text += " "
        offsets.append((len(text), len(text) + len(token)))
        text += token
    gold, start = set(), None
    for i, (_, tag) in enumerate(tweet + [("", "O")]):
        if tag == "O" or tag.startswith("B-") or start is None:
            if start is not None:
                gold.add((offsets[start][0], offsets[i - 1][1]))
                start = None
            if tag != "O":
                start = i  # B-, or an I- that opens a span (tolerated)
    return Example(text, frozenset(gold))


def prf(predicted: list[set[tuple[int, int]]], examples: list[Example]) -> dict:
    tp = fp = fn = 0
    for pred, ex in zip(predicted, examples):
        tp += len(pred & ex.gold)
        fp += len(pred - ex.gold)
        fn += len(ex.gold - pred)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(100 * p, 1),
        "recall": round(100 * r, 1),
        "f1": round(100 * f, 1),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


class Bench:
    def __init__(self, model: str) -> None:
        import spacy

        self.plain_nlp = spacy.load(model)  # plain spaCy: the full default pipeline
        self.detector_nlp = spacy.load(model, exclude=["lemmatizer"])
        self.model = model

    def plain(self, examples: list[Example]) -> dict:
        docs = self.plain_nlp.pipe([ex.text for ex in examples], batch_size=64)
        pred = [{(e.start_char, e.end_char) for e in doc.ents if e.label_ in DEFAULT_LABELS} for doc in docs]
        return prf(pred, examples)

    def detector(self, examples: list[Example], rule_sets: dict[str, frozenset[str]]) -> dict[str, dict]:
        """Scores per rule set; spaCy parses each text once, every rule set reuses the docs."""
        texts = [ex.text for ex in examples]
        docs = list(self.detector_nlp.pipe([spacy_view(t) for t in texts], batch_size=64))
        out = {}
        for name, rules in rule_sets.items():
            det = EntityDetector(self.model, rules=rules, nlp=self.detector_nlp)
            pred = [{(s.start, s.end) for s in det.spans_for_doc(t, d)} for t, d in zip(texts, docs)]
            out[name] = prf(pred, examples)
        return out


def ablation_sets() -> dict[str, frozenset[str]]:
    sets = {"all rules": DEFAULT_RULES}
    sets.update({f"without {r}": DEFAULT_RULES - {r} for r in RULES})
    sets["no rules (view only)"] = frozenset()
    return sets


def machine() -> str:
    from bench.machine import cpu_model

    cpu = cpu_model()
    import spacy

    return (
        f"{cpu}, {os.cpu_count()} logical CPUs visible; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; spaCy {spacy.__version__}"
    )


def row(name: str, m: dict) -> str:
    cells = f"{m['precision']:.1f} | {m['recall']:.1f} | **{m['f1']:.1f}** | {m['tp']} | {m['fp']} | {m['fn']}"
    return f"| {name} | {cells} |"


HEADER = "| system | P | R | F1 | TP | FP | FN |\n|---|---|---|---|---|---|---|"


def summary(tweets: list, examples: list[Example], scores: dict) -> dict:
    return {"tweets": len(tweets), "gold_spans": sum(len(e.gold) for e in examples), "scores": scores}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_SPACY_MODEL)
    parser.add_argument("--dev-only", action="store_true", help="dev ablation only; do not read test.txt")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)

    data = research_data_dir()
    folder = data / "twitter2017" if data else None
    if folder is None or not all((folder / f"{s}.txt").is_file() for s in ("train", "valid", "test")):
        print(
            "SKIPPED: Twitter-2017 not found (expected <data>/twitter2017/{train,valid,test}.txt; "
            "set MMKG_DATA to the research data directory)."
        )
        return 0

    started = time.perf_counter()
    bench = Bench(args.model)
    results: dict = {"dev": {}, "test": {}}
    for split in DEV_SPLITS:
        tweets = read_conll(folder / f"{split}.txt")
        examples = [build_example(t, "tweet") for t in tweets]
        scores = {"plain spaCy": bench.plain(examples)}
        scores.update(bench.detector(examples, ablation_sets()))
        results["dev"][split] = summary(tweets, examples, scores)
        print(f"\n[dev: {split}.txt, tweet form, {len(tweets)} tweets]")
        for name, m in scores.items():
            print(f"  {name:28s} P {m['precision']:5.1f}  R {m['recall']:5.1f}  F1 {m['f1']:5.1f}")

    if not args.dev_only:
        tweets = read_conll(folder / "test.txt")
        for form in TEXT_FORMS:
            examples = [build_example(t, form) for t in tweets]
            scores = {"plain spaCy": bench.plain(examples)}
            scores["EntityDetector"] = bench.detector(examples, {"all": DEFAULT_RULES})["all"]
            results["test"][form] = summary(tweets, examples, scores)
            print(f"\n[TEST: test.txt, {form} form, {len(tweets)} tweets]")
            for name, m in scores.items():
                print(f"  {name:28s} P {m['precision']:5.1f}  R {m['recall']:5.1f}  F1 {m['f1']:5.1f}")
        tweet_scores = results["test"]["tweet"]["scores"]
        gain = tweet_scores["EntityDetector"]["f1"] - tweet_scores["plain spaCy"]["f1"]
        print(f"\nTest F1 gain over plain spaCy (tweet form): {gain:+.1f} points")

    elapsed = time.perf_counter() - started
    results["meta"] = {
        "model": args.model,
        "labels": sorted(DEFAULT_LABELS),
        "rules": list(RULES),
        "machine": machine(),
        "seconds": round(elapsed, 1),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "command": "python -m bench.entity_detection" + (" --dev-only" if args.dev_only else ""),
    }
    if not args.no_write and not args.dev_only:
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / "entity_detection.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        (RESULTS_DIR / "entity_detection.md").write_text(report(results), encoding="utf-8")
        print(f"wrote {RESULTS_DIR / 'entity_detection.md'}")
    return 0


def report(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Entity detection: Twitter-2017, exact span match (types ignored)",
        "",
        f"Command: `{meta['command']}` (from the repository root; data via `MMKG_DATA`).  ",
        f"Machine: {meta['machine']}.  ",
        f"Date: {meta['date']}; wall time {meta['seconds']} s. spaCy model `{meta['model']}`; "
        f"labels kept for both systems: {', '.join(meta['labels'])}.",
        "",
        "Data: Twitter-2017 (Zhang et al., AAAI 2018), text side as released with UMT (Yu et al., "
        "ACL 2020). The corpus splits `@user` / `#tag` into sigil and name and annotates the name "
        "only. *tweet form*: tokens joined with single spaces but `@`/`#` glued back to the next "
        "token, as the post was written (what the detector sees in production). *tokens form*: "
        "every token joined with single spaces (`# Nashville`).",
        "",
        "## Test (scored once, final configuration)",
        "",
    ]
    gains = {
        form: block["scores"]["EntityDetector"]["f1"] - block["scores"]["plain spaCy"]["f1"]
        for form, block in results["test"].items()
    }
    if gains:
        lines += [
            "F1 gain of EntityDetector over plain spaCy: "
            + ", ".join(f"{g:+.1f} points ({form} form)" for form, g in gains.items())
            + ". In the tokens form a handle reads `@ name`, which no real post contains, so the "
            "handle rule cannot fire there.",
            "",
        ]
    for form, block in results["test"].items():
        lines += [f"### {form} form ({block['tweets']} tweets, {block['gold_spans']} gold spans)", "", HEADER]
        lines += [row(name, m) for name, m in block["scores"].items()]
        lines.append("")
    lines += [
        "## Development: rule ablation (valid.txt and train.txt, tweet form)",
        "",
        "Nothing is trained on train.txt, so it serves as a second, larger dev set. Every rule "
        "kept in `extraction/detection.py` raises F1 on both; \"no rules\" is spaCy on the "
        "masked view (URLs, emoji, `RT`, sigils blanked) with the label filter only.",
        "",
    ]
    for split, block in results["dev"].items():
        lines += [f"### {split}.txt ({block['tweets']} tweets, {block['gold_spans']} gold spans)", "", HEADER]
        lines += [row(name, m) for name, m in block["scores"].items()]
        lines.append("")
    lines += [
        "Measured during development (with the rule set of the time) and not kept (valid / train "
        "F1 change): a rule taking short "
        "all-capitals hashtags (`#NBA`) as mentions (+0.1 / 0.0); dropping all-lowercase NER spans "
        "(0.0 / -0.1); Title-casing ALL-CAPS posts before NER (-0.1 on valid); cutting spans at "
        "spaced dashes and colons (+0.1 / -0.3). Kept label set: adding NORP, FAC, EVENT, PRODUCT "
        "and WORK_OF_ART to PERSON/ORG/GPE/LOC raised plain spaCy's valid F1 (57.1 -> 58.2 in the "
        "tokens form, 55.5 -> 56.6 in the tweet form).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
