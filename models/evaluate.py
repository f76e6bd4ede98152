"""Score a saved MG-VMoE checkpoint on one part of a zero-shot split.

    python -m models.evaluate models/checkpoints/mre-mnre --split mnre --part test
    python -m models.evaluate models/checkpoints/met-tweets --split wnut16-fold3 --part val --dry-run

The checkpoint's marker embeddings are installed into the text encoder before features are computed,
so the features match the ones the heads were trained on.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from models.checkpoint import load_checkpoint
from models.data import load_split
from models.train import evaluate_checkpoint, prepare_for_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="mnre")
    parser.add_argument("--part", choices=["train", "val", "test"], default="test")
    parser.add_argument("--dry-run", action="store_true", help="score one batch only")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    split = load_split(args.split)
    if split.task != ckpt.config.task:
        parser.error(f"checkpoint task {ckpt.config.task} cannot score split task {split.task}")
    data = prepare_for_checkpoint(split, ckpt)
    samples = getattr(split, args.part)
    classes = getattr(split, f"{args.part}_classes")
    if args.dry_run:
        samples = samples[: ckpt.config.eval_batch_size]
    seen = set(ckpt.card.get("labels", {}).get("train", []))
    if args.part != "train" and seen & set(classes):
        logging.warning("classes %s were seen in training: this is not a zero-shot score", sorted(seen & set(classes)))
    metrics = evaluate_checkpoint(ckpt, data, args.part, samples)
    print(json.dumps({"checkpoint": args.checkpoint, "model_version": ckpt.model_version, "split": split.name,
                      "part": args.part, "classes": classes, **metrics}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
