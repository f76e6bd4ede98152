"""Re-calibrate a checkpoint's abstention threshold on its split's *validation* classes.

    python -m models.calibrate models/checkpoints/met-tweets --split tweets-all-types
    python -m models.calibrate models/checkpoints/mre-mnre --split mnre-pipeline --mix validation-file

The threshold is on the best class's raw score (``models.train.THRESHOLD_STATISTIC``; unlike a softmax
probability it does not depend on how many labels the set has): below it, a mention is typed
``Other`` and a pair gets no relation. ``models.train`` sets it at the end of training with the same
rule (``calibrate_threshold``: keep a prediction where, on the validation classes' samples plus the
split's negatives - MNRE ``None`` pairs, WNUT-16 ``other`` mentions of the validation file -
kept-correct minus kept-wrong is largest); this command recomputes it, e.g. after a change of label descriptions, and
rewrites only the card's ``thresholds`` (the weights, and so their hash, are untouched). Never uses
test classes.

``--mix validation-file`` (relations) calibrates on the validation file's own pairs only
(``models.data.validation_file_samples``): its validation-relation pairs beside its ``None`` pairs, about 3
unrelated pairs per related one, the mix a post's candidate pairs have. ``pooled`` (what training does) adds
the validation relations' samples of the other two files, 0.3 unrelated per related pair: the mix of the
zero-shot benchmark, not of the graph.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmkg.files import atomic_write_text
from models.checkpoint import CARD, load_checkpoint
from models.data import load_split, validation_file_samples
from models.train import calibrate_thresholds, prepare_for_checkpoint


def calibrate(checkpoint: str | Path, split_name: str, data_dir: Path | None = None, mix: str | None = None) -> dict:
    """Recompute the card's thresholds on ``mix`` (default: the checkpoint's own ``config.calibrate_on``)."""
    ckpt = load_checkpoint(checkpoint)
    mix = mix or ckpt.config.calibrate_on
    split = load_split(split_name, data_dir)
    if split.task != ckpt.config.task or not split.val:
        raise ValueError(f"split {split_name!r} has no validation samples for task {ckpt.config.task}")
    data = prepare_for_checkpoint(split, ckpt)
    samples = validation_file_samples(split) if mix == "validation-file" else None
    thresholds = calibrate_thresholds(ckpt.model, data, samples, split=split.name, val_classes=split.val_classes,
                                      mix=mix)
    card_path = Path(checkpoint) / CARD
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("thresholds", {}).get("decision"):
        # The end-to-end rule (``extraction.mg_vmoe.relation_rule`` / ``type_min_gap``) was chosen against the old threshold.
        bench = "decision_rules" if ckpt.config.task == "mre" else "type_rules"
        print("note: the card's end-to-end decision rule (thresholds.decision) was chosen against the old threshold "
              f"and is dropped: choose it again with python -m bench.graph_quality.{bench}", flush=True)
    card["thresholds"] = thresholds
    atomic_write_text(card_path, json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return thresholds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--split", required=True)
    parser.add_argument("--mix", choices=["pooled", "validation-file"],
                        help="validation pairs the threshold is chosen on (default: the checkpoint's calibrate_on; "
                             "see the module docstring)")
    args = parser.parse_args(argv)
    print(json.dumps(calibrate(args.checkpoint, args.split, mix=args.mix), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
