"""Relation checkpoints on two validation mixes (validation relations only, never test ones).

    python -m bench.calibration_mix [--split mnre-pipeline-wide] models/checkpoints/mre-mnre /tmp/other-checkpoint

For each checkpoint, on the mnre-pipeline split's validation relations plus the validation file's ``None``
pairs: the best pair micro-F0.5 (both readings) with its precision, recall and threshold, the scores at the
checkpoint's own threshold, and the best precision at recall >= 5 / 10 / 20 / 30 %. Two mixes: ``pooled`` (the
validation relations' samples of all three MNRE files: 0.3 ``None`` pairs per related pair) and
``validation-file`` (``models.data.validation_file_samples``: about 3 per related pair, a post's mix).
"""

from __future__ import annotations

import argparse
import sys

import torch

from models.checkpoint import load_checkpoint
from models.data import load_split, validation_file_samples
from models.train import calibrate_pair_threshold, pair_metrics, pr_curve, prepare_for_checkpoint, score_pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration_mix", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--split", default="mnre-pipeline",
                        help="whose validation relations score (mnre-pipeline-wide: the 3 it keeps unseen)")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    torch.set_num_threads(1)
    split = load_split(args.split)
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        data = prepare_for_checkpoint(split, ckpt)
        store, emb = data.features_of(ckpt.config), data.class_emb[(ckpt.config.label_text, "val")]
        for mix, samples in (("pooled", split.val), ("validation-file", validation_file_samples(split))):
            d = score_pairs(ckpt.model.eval(), store, samples + split.negatives, split.val_classes, emb, split.symmetric)
            t = calibrate_pair_threshold(d)
            best, own = pair_metrics(d, t), pair_metrics(d, ckpt.thresholds["min_score"])
            _, p, r = pr_curve(d)
            at = {x: max([100 * float(pp) for pp, rr in zip(p, r) if rr >= x / 100] or [0.0]) for x in (5, 10, 20, 30)}
            print(f"{path} {mix} ({len(samples)} related pairs + {len(split.negatives)} None): best F0.5 "
                  f"{best['micro_f05']:.1f} (P {best['micro_p']:.1f} R {best['micro_r']:.1f}, threshold {t:.2f}); at the "
                  f"card's threshold {ckpt.thresholds['min_score']:.2f}: P {own['micro_p']:.1f} R {own['micro_r']:.1f} "
                  f"F0.5 {own['micro_f05']:.1f}; best P at R >= 5/10/20/30: "
                  + " / ".join(f"{v:.1f}" for v in at.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
