"""Train MG-VMoE heads on the seen classes of a zero-shot split; early-stop on validation classes.

    python -m models.train --split mnre --out models/checkpoints/mre-mnre
    python -m models.train --split wnut16-fold1 --no-vat --dry-run

Model selection (early stopping, abstention thresholds, mu-vs-sampling) looks at validation classes
only. Test classes are scored once, with the selected weights, and only when the split has them.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import precision_recall_fscore_support
from tqdm import tqdm

from models.config import MGVMoEConfig
from models.data import ClassSplit, Sample, load_split, samples_fingerprint
from models.features import FeatureCache, FeatureStore
from models.modeling import MGVMoE, seed_everything, training_step

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- metrics
def zero_shot_metrics(gold: list[str], pred: list[str], classes: list[str]) -> dict:
    """Macro precision / recall / F1 over ``classes`` and accuracy (= micro-F1, one label per sample)."""
    p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=classes, average="macro", zero_division=0)
    acc = float(np.mean([g == q for g, q in zip(gold, pred)])) if gold else 0.0
    return {"macro_p": 100 * p, "macro_r": 100 * r, "macro_f1": 100 * f, "accuracy": 100 * acc, "n": len(gold)}


@torch.inference_mode()
def predict(
    model: MGVMoE, store: FeatureStore, samples: list[Sample], class_emb: torch.Tensor,
    batch_size: int = 256, sample: bool | None = None,
) -> torch.Tensor:
    """(N, C) scores of each sample against each class embedding."""
    model.eval()
    order = sorted(range(len(samples)), key=lambda i: len(store.text[store.row[samples[i].uid]]))  # less padding
    scores = torch.zeros(len(samples), len(class_emb))
    for k in range(0, len(order), batch_size):
        idx = order[k : k + batch_size]
        scores[idx] = model(store.batch([samples[i] for i in idx]), class_emb, sample=sample).scores
    return scores


def evaluate(model, store, samples, classes, class_emb, batch_size=256, sample=None) -> tuple[dict, torch.Tensor]:
    scores = predict(model, store, samples, class_emb, batch_size, sample)
    pred = [classes[i] for i in scores.argmax(1).tolist()]
    return zero_shot_metrics([s.label for s in samples], pred, classes), scores


#: What a checkpoint's abstention threshold is compared with: the best class's raw score. A class's
#: raw score depends only on the sample and that class, not on which other labels are in the set, so
#: the threshold calibrated on 3-7 validation classes carries over to an ontology of any size (a max
#: softmax probability does not: it shrinks as similar labels are added).
THRESHOLD_STATISTIC = "best raw score"


def calibrate_threshold(scores: torch.Tensor, gold: list[int]) -> float:
    """Abstention threshold on the best raw score that maximises micro-F1 over validation samples: a
    kept right prediction is a true positive, a kept wrong one a false positive, and every sample of a
    class not predicted right a false negative. A gold index of -1 marks a negative (no class at all:
    an MNRE ``None`` pair, a WNUT ``other`` mention) - keeping anything for it is a false positive.
    Relations and types are chosen this way in ``extraction.label_similarity`` too."""
    if len(scores) == 0:
        return 0.0
    best, pred = scores.max(1)
    gold_t = torch.tensor(gold)
    right = (pred == gold_t).float()[best.argsort(descending=True)]
    positives = float((gold_t >= 0).sum())
    tp = right.cumsum(0)
    fp = (1 - right).cumsum(0)
    f1 = 2 * tp / (2 * tp + fp + (positives - tp)).clamp(min=1.0)
    k = int(f1.argmax())
    return float(best.sort(descending=True).values[k]) if f1[k] > 0 else float("inf")


def calibrate_thresholds(model: MGVMoE, data: "PreparedSplit", samples: list[Sample] | None = None, **extra) -> dict:
    """The checkpoint card's ``thresholds``: ``calibrate_threshold`` over the split's validation samples
    (``samples``, default all) plus its negatives, scored against the validation classes."""
    split, config = data.split, model.config
    samples = (split.val if samples is None else samples) + split.negatives
    scores = predict(model, data.store(config.text_input), samples, data.class_emb[(config.label_text, "val")],
                     config.eval_batch_size)
    gold = [split.val_classes.index(s.label) if s.label in split.val_classes else -1 for s in samples]
    return {"min_score": calibrate_threshold(scores, gold), "statistic": THRESHOLD_STATISTIC,
            "calibrated_on": "validation classes", "negatives": len(split.negatives), **extra}


# ------------------------------------------------------------------------------------------- sampling
def balanced_batches(samples: list[Sample], classes: list[str], steps: int, batch_size: int,
                     rng: np.random.Generator) -> list[list[Sample]]:
    """Class-balanced sampling as the reference: draw k takes a sample of class k mod n (each class's
    samples reshuffled whenever they run out)."""
    pools = {c: [s for s in samples if s.label == c] for c in classes}
    pools = {c: v for c, v in pools.items() if v}
    names = sorted(pools, key=classes.index)
    queues: dict[str, list[Sample]] = {c: [] for c in names}
    draws = []
    for k in range(steps * batch_size):
        c = names[k % len(names)]
        if not queues[c]:
            queues[c] = [pools[c][i] for i in rng.permutation(len(pools[c]))]
        draws.append(queues[c].pop())
    order = rng.permutation(len(draws))  # mix classes within a batch
    draws = [draws[i] for i in order]
    return [draws[k : k + batch_size] for k in range(0, len(draws), batch_size)]


# ------------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    model: MGVMoE
    config: MGVMoEConfig
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    val: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    test_scores: torch.Tensor | None = None
    thresholds: dict = field(default_factory=dict)
    inference_mode_check: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class PreparedSplit:
    """A split with its class embeddings (both label texts) and its cached features, per text input."""

    split: ClassSplit
    class_emb: dict  # (mode, part) -> (C, text_hidden)
    marker_embeddings: torch.Tensor
    cache: FeatureCache | None  # None: only the given ``stores`` exist (tests)
    stores: dict = field(default_factory=dict)  # text_input -> FeatureStore, encoded on first use

    def store(self, text_input: str = "markers") -> FeatureStore:
        if text_input not in self.stores:
            # One cache per dataset pool: folds and split seeds re-partition the same samples.
            split = self.split
            samples = sorted(split.train + split.val + split.test + split.negatives, key=lambda s: s.uid)
            self.stores[text_input] = self.cache.features(samples, split.task, split.name.split("-")[0], text_input)
        return self.stores[text_input]


def prepare(split: ClassSplit, cache: FeatureCache) -> PreparedSplit:
    emb = {}
    for mode in ("name", "description"):
        for part, classes in (("train", split.train_classes), ("val", split.val_classes), ("test", split.test_classes)):
            emb[(mode, part)] = cache.label_embeddings(classes, mode) if classes else torch.zeros(0, 1)
    return PreparedSplit(split, emb, cache.text_encoder.marker_embeddings(), cache)


def prepare_for_checkpoint(split: ClassSplit, checkpoint) -> PreparedSplit:
    """``prepare`` with a saved checkpoint's encoders, its marker embeddings installed first, so the
    features match the ones its heads were trained on."""
    config = checkpoint.config
    cache = FeatureCache(config.text_encoder, config.image_encoder, config.max_length)
    cache.text_encoder.set_marker_embeddings(checkpoint.marker_embeddings)
    return prepare(split, cache)


def evaluate_checkpoint(checkpoint, data: PreparedSplit, part: str, samples: list[Sample] | None = None) -> dict:
    """Zero-shot metrics of a saved checkpoint on one part (``train``/``val``/``test``) of the split,
    scored against that part's classes; ``samples`` defaults to all of the part's."""
    config, split = checkpoint.config, data.split
    samples = getattr(split, part) if samples is None else samples
    metrics, _ = evaluate(checkpoint.model, data.store(config.text_input), samples, getattr(split, f"{part}_classes"),
                          data.class_emb[(config.label_text, part)], config.eval_batch_size)
    return metrics


def train(config: MGVMoEConfig, data: PreparedSplit, progress: bool = True, dry_run: bool = False) -> TrainResult:
    split, store = data.split, data.store(config.text_input)
    if config.task != split.task:
        raise ValueError(f"config task {config.task} != split task {split.task}")
    started = time.perf_counter()
    seed_everything(config.seed)
    model = MGVMoE(config)
    optimizer = torch.optim.Adam(model.head_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    r_optimizer = torch.optim.Adam([model.vat.r], lr=config.vat_lr)
    rng = np.random.default_rng(config.seed)
    emb = lambda part: data.class_emb[(config.label_text, part)]  # noqa: E731
    steps = config.steps_per_epoch or max(1, len(split.train) // config.batch_size)
    best_f1, best_state, best_epoch, bad = -1.0, None, 0, 0
    history = []
    # Epoch 0 = the untrained heads: with a similarity prior they are the label-similarity scorer, and
    # early stopping may keep them if training only hurts the validation classes.
    val, _ = evaluate(model, store, split.val[: config.eval_batch_size] if dry_run else split.val,
                      split.val_classes, emb("val"), config.eval_batch_size)
    history.append({"epoch": 0, "val_macro_f1": val["macro_f1"], "val_accuracy": val["accuracy"], "seconds": 0.0})
    if config.similarity_prior > 0:  # random heads are never a candidate, the label-similarity start is
        best_f1, best_state = val["macro_f1"], copy.deepcopy(model.state_dict())
    for epoch in range(1, config.epochs + 1):
        batches = balanced_batches(split.train, split.train_classes, steps, config.batch_size, rng)
        sums: dict[str, float] = {}
        bar = tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False)
        for i, batch_samples in enumerate(bar):
            terms = training_step(model, store.batch(batch_samples, split.train_classes), emb("train"),
                                  optimizer, r_optimizer)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{terms['loss']:.3f}")
            if dry_run:
                break
        val_samples = split.val[: config.eval_batch_size] if dry_run else split.val
        val, _ = evaluate(model, store, val_samples, split.val_classes, emb("val"), config.eval_batch_size)
        row = {"epoch": epoch, **{f"train_{k}": v / (i + 1) for k, v in sums.items()},
               "val_macro_f1": val["macro_f1"], "val_accuracy": val["accuracy"],
               "seconds": time.perf_counter() - started}
        history.append(row)
        log.info("epoch %d loss %.4f val macro-F1 %.2f", epoch, row["train_loss"], val["macro_f1"])
        if val["macro_f1"] > best_f1:
            best_f1, best_epoch, bad = val["macro_f1"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= config.patience:
                break
        if dry_run:
            break
    model.load_state_dict(best_state)
    model.eval()
    result = TrainResult(model, config, history, best_epoch)
    val_samples = split.val[: config.eval_batch_size] if dry_run else split.val
    result.val, _ = evaluate(model, store, val_samples, split.val_classes, emb("val"), config.eval_batch_size)
    result.thresholds = calibrate_thresholds(model, data, val_samples)
    if config.use_vmoe and config.fusion == "attention":
        # Measured, not assumed: validation macro-F1 with the mean mu vs with one sampled z.
        torch.manual_seed(config.seed)
        sampled, _ = evaluate(model, store, val_samples, split.val_classes, emb("val"),
                              config.eval_batch_size, sample=True)
        result.inference_mode_check = {"val_macro_f1_mu": result.val["macro_f1"] if not config.sample_at_inference
                                       else None, "val_macro_f1_sampled": sampled["macro_f1"]}
    if split.test and not dry_run:
        result.test, result.test_scores = evaluate(model, store, split.test, split.test_classes, emb("test"),
                                                   config.eval_batch_size)
    result.seconds = time.perf_counter() - started
    return result


def checkpoint_card(name: str, result: TrainResult, data: PreparedSplit) -> dict:
    split = data.split
    return {
        "name": name,
        "task": split.task,
        "labels": {"train": split.train_classes, "val": split.val_classes, "test": split.test_classes},
        "data": split.describe() | {"fingerprint": samples_fingerprint(split.train + split.val + split.test)},
        "metrics": {"val": result.val, "test": result.test, "best_epoch": result.best_epoch,
                    "inference_mode_check": result.inference_mode_check},
        "history": result.history,
        "thresholds": result.thresholds,
        "train_seconds": round(result.seconds, 1),
    }


def config_from_args(args: argparse.Namespace, task: str, preset: str = "reference") -> MGVMoEConfig:
    config = MGVMoEConfig.for_pipeline(task) if preset == "pipeline" else MGVMoEConfig(task=task)
    overrides = {k: v for k, v in {
        "seed": args.seed, "epochs": args.epochs, "patience": args.patience, "lr": args.lr, "beta": args.beta,
        "label_text": args.label_text, "fusion": args.fusion, "batch_size": args.batch_size,
        "similarity_prior": args.similarity_prior, "text_input": args.text_input, "prior_pool": args.prior_pool,
    }.items() if v is not None}
    for flag in ("vmoe", "vat", "infonce", "image"):
        if getattr(args, f"no_{flag}"):
            overrides[f"use_{flag}"] = False
    return config.replace(**overrides)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--patience", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--beta", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--label-text", choices=["name", "description"])
    parser.add_argument("--fusion", choices=["attention", "concat", "none"])
    parser.add_argument("--similarity-prior", type=float, help="start from label similarity (0 = reference)")
    parser.add_argument("--text-input", choices=["markers", "spans"])
    parser.add_argument("--prior-pool", choices=["text", "entities"])
    for flag in ("vmoe", "vat", "infonce", "image"):
        parser.add_argument(f"--no-{flag}", action="store_true", help=f"ablation: use_{flag}=False")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="mnre", help="mnre | mnre-seedN | wnut16-foldK | wnut16-pipeline | mnre-pipeline")
    parser.add_argument("--out", help="checkpoint directory to write (none: report only)")
    parser.add_argument("--name", help="checkpoint name (default: directory name)")
    parser.add_argument("--dry-run", action="store_true", help="stop after one training batch")
    parser.add_argument("--preset", choices=["reference", "pipeline"], default="reference",
                        help="reference: MG-VMoE as specified; pipeline: MGVMoEConfig.for_pipeline (shipped checkpoints)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the dev box has 2 shared cores)")
    parser.add_argument("--no-progress", action="store_true")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    split = load_split(args.split)
    config = config_from_args(args, split.task, args.preset)
    config.extra = {"split": split.name}
    data = prepare(split, FeatureCache(config.text_encoder, config.image_encoder, config.max_length))
    result = train(config, data, progress=not args.no_progress, dry_run=args.dry_run)
    summary = {"split": split.name, "best_epoch": result.best_epoch, "val": result.val, "test": result.test,
               "thresholds": result.thresholds, "inference_mode_check": result.inference_mode_check,
               "seconds": round(result.seconds, 1)}
    print(json.dumps(summary, indent=2))
    if args.out and not args.dry_run:
        from pathlib import Path

        from models.checkpoint import save_checkpoint

        name = args.name or Path(args.out).name
        save_checkpoint(args.out, result.model, data.marker_embeddings, checkpoint_card(name, result, data))
        print(f"checkpoint written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
