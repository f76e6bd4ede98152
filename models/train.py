"""Train MG-VMoE heads on the seen classes of a zero-shot split; early-stop on validation classes.

    python -m models.train --split mnre --out models/checkpoints/mre-mnre
    python -m models.train --split wnut16-fold1 --no-vat --dry-run

Model selection (early stopping, abstention thresholds, mu-vs-sampling) looks at validation classes
only. Test classes are scored once, with the selected weights, and only when the split has them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import precision_recall_fscore_support
from tqdm import tqdm

from models.config import PIPELINE_CANDIDATES, MGVMoEConfig
from models.data import ClassSplit, Sample, load_split, samples_fingerprint, validation_file_samples
from models.features import FeatureCache, FeatureStore
from models.modeling import MGVMoE, concat_batches, score_gap, seed_everything, training_step

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- metrics
def zero_shot_metrics(gold: list[str], pred: list[str], classes: list[str]) -> dict:
    """Macro precision / recall / F1 over ``classes``, accuracy (= micro-F1, one label per sample), and each
    class's F1 and gold count (a class with 9 samples moves macro-F1 as much as one with 500)."""
    if not gold:
        return {"macro_p": 0.0, "macro_r": 0.0, "macro_f1": 0.0, "accuracy": 0.0, "n": 0,
                "per_class_f1": {c: 0.0 for c in classes}, "support": {c: 0 for c in classes}}
    p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=classes, average="macro", zero_division=0)
    _, _, per_f, support = precision_recall_fscore_support(gold, pred, labels=classes, average=None, zero_division=0)
    acc = float(np.mean([g == q for g, q in zip(gold, pred)])) if gold else 0.0
    return {"macro_p": 100 * p, "macro_r": 100 * r, "macro_f1": 100 * f, "accuracy": 100 * acc, "n": len(gold),
            "per_class_f1": {c: 100 * float(x) for c, x in zip(classes, per_f)},
            "support": {c: int(n) for c, n in zip(classes, support)}}


@torch.inference_mode()
def predict(
    model: MGVMoE, store: FeatureStore, samples: list[Sample], class_emb: torch.Tensor,
    batch_size: int = 256, sample: bool | None = None, swap: bool = False,
) -> torch.Tensor:
    """(N, C) scores of each sample against each class embedding (``swap``: pairs read tail-first)."""
    model.eval()
    order = sorted(range(len(samples)), key=lambda i: len(store.text[store.row[samples[i].uid]]))  # less padding
    scores = torch.zeros(len(samples), len(class_emb))
    for k in range(0, len(order), batch_size):
        idx = order[k : k + batch_size]
        scores[idx] = model(store.batch([samples[i] for i in idx], swap=swap), class_emb, sample=sample).scores
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


# ----------------------------------------------------------------- relation pairs: both orders, "None"
#: Relations are scored as the pipeline writes them: each pair read head-first and tail-first, the best
#: (relation, order) kept when its raw score clears the threshold; right only with the gold relation in the
#: gold order (either order for a symmetric relation). The threshold maximises micro-F_beta with beta 0.5:
#: precision weighs twice as much as recall, since a wrong triple in the graph costs more than a missing one.
PAIR_BETA = 0.5
PAIR_STATISTIC = "best raw score over allowed relations and both orders"


@dataclass
class PairDecisions:
    """For each pair: the best score over classes and both orders, and whether that choice is right."""

    best: torch.Tensor  # (N,)
    correct: torch.Tensor  # (N,) bool
    reversed: torch.Tensor  # (N,) bool: the best reading is tail-first
    positives: int  # pairs that hold some class (the recall denominator)
    none: torch.Tensor  # (N,) bool: the pair holds no class
    #: (N,) how far the best score stands above the best score of any other class (either reading): the
    #: pipeline's ambiguity gap (``extraction.mg_vmoe.RelationRule``); None where not computed
    gap: torch.Tensor | None = None


def pair_decisions(forward: torch.Tensor, backward: torch.Tensor, gold: list[int],
                   symmetric: set[int] | frozenset[int] = frozenset(),
                   tail_first_in_text: torch.Tensor | None = None) -> PairDecisions:
    """``forward`` / ``backward``: (N, C) raw scores of each pair read head-first / tail-first; ``gold``: the
    class index of each pair, -1 for none; ``symmetric``: class indices that hold both ways. A tie goes to the
    reading whose head comes first in the text (``tail_first_in_text``: the gold tail does), as the pipeline
    breaks it (``extraction.zero_shot.best_reading_per_pair`` keeps the first candidate): a scorer blind to
    direction is not handed the gold order."""
    best_f, cls_f = forward.max(1)
    best_b, cls_b = backward.max(1)
    rev = best_b > best_f
    if tail_first_in_text is not None:
        rev = rev | ((best_b == best_f) & tail_first_in_text)
    best, cls = torch.where(rev, best_b, best_f), torch.where(rev, cls_b, cls_f)
    gold_t = torch.tensor(gold, dtype=torch.long)
    sym = torch.tensor([int(c) in symmetric for c in cls.tolist()], dtype=torch.bool)
    correct = (cls == gold_t) & (gold_t >= 0) & (~rev | sym)
    gap = score_gap(torch.maximum(forward, backward), cls)  # either reading of every other class
    return PairDecisions(best, correct, rev, int((gold_t >= 0).sum()), gold_t < 0, gap)


def with_min_gap(d: PairDecisions, min_gap: float | None) -> PairDecisions:
    """``d`` with every pair whose best class stands less than ``min_gap`` above another class abstaining
    (its best score -inf: no threshold keeps it); ``None``: ``d`` itself."""
    if min_gap is None:
        return d
    return dataclasses.replace(d, best=torch.where(d.gap >= min_gap, d.best, torch.full_like(d.best, float("-inf"))))


def f_beta(p, r, beta: float):
    """F_beta of precision and recall (floats or tensors); 0 where both are 0."""
    b2 = beta * beta
    if isinstance(p, torch.Tensor):
        return torch.nan_to_num((1 + b2) * p * r / (b2 * p + r))
    return (1 + b2) * p * r / (b2 * p + r) if b2 * p + r else 0.0


def pr_curve(d: PairDecisions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thresholds (best scores, descending) and micro precision / recall when keeping pairs at or above each."""
    order = d.best.argsort(descending=True)
    right = d.correct[order].float()
    tp, kept = right.cumsum(0), torch.arange(1, len(order) + 1, dtype=torch.float)
    return d.best[order], tp / kept, tp / max(d.positives, 1)


def calibrate_pair_threshold(d: PairDecisions, beta: float = PAIR_BETA) -> float:
    """The raw-score threshold that maximises micro-F_beta over validation pairs (classes + ``None``)."""
    if len(d.best) == 0:
        return 0.0
    thresholds, p, r = pr_curve(d)
    f = f_beta(p, r, beta)
    f = torch.where(torch.isfinite(thresholds), f, torch.full_like(f, -1.0))  # an abstaining pair is never kept
    k = int(f.argmax())
    return float(thresholds[k]) if f[k] > 0 else float("inf")


def pair_metrics(d: PairDecisions, threshold: float) -> dict:
    """Micro P/R/F1/F0.5 (percent) over pairs kept at ``threshold``, and how many ``None`` pairs got a relation."""
    kept = d.best >= threshold
    tp, n_kept = int((kept & d.correct).sum()), int(kept.sum())
    p, r = tp / n_kept if n_kept else 0.0, tp / d.positives if d.positives else 0.0
    none = int(d.none.sum())
    return {"micro_p": 100 * p, "micro_r": 100 * r, "micro_f1": 100 * f_beta(p, r, 1.0),
            "micro_f05": 100 * f_beta(p, r, 0.5), "kept": n_kept, "pairs": len(d.best), "positives": d.positives,
            "none_pairs": none, "none_given_relation": int((kept & d.none).sum()),
            "none_given_relation_pct": 100 * int((kept & d.none).sum()) / none if none else 0.0,
            "threshold": threshold}


def score_pairs(model: MGVMoE, store: FeatureStore, samples: list[Sample], classes: list[str],
                class_emb: torch.Tensor, symmetric: frozenset[str] = frozenset(), batch_size: int = 256) -> PairDecisions:
    """Both readings of every pair (``samples`` may include ``None`` pairs) against ``classes``."""
    forward = predict(model, store, samples, class_emb, batch_size)
    backward = predict(model, store, samples, class_emb, batch_size, swap=True)
    return decide_pairs(forward, backward, samples, classes, symmetric)


def decide_pairs(forward: torch.Tensor, backward: torch.Tensor, samples: list[Sample], classes: list[str],
                 symmetric: frozenset[str] = frozenset()) -> PairDecisions:
    """``pair_decisions`` for MRE samples: gold indices, symmetric classes and text order read off the samples."""
    gold = [classes.index(s.label) if s.label in classes else -1 for s in samples]
    tail_first = torch.tensor([s.spans[1][0] < s.spans[0][0] for s in samples], dtype=torch.bool)
    return pair_decisions(forward, backward, gold, {classes.index(c) for c in symmetric if c in classes}, tail_first)


def calibrate_thresholds(model: MGVMoE, data: "PreparedSplit", samples: list[Sample] | None = None, **extra) -> dict:
    """The checkpoint card's ``thresholds``, chosen over the split's validation samples (``samples``, default
    all) plus its validation negatives, scored against the validation classes. Relations: both readings of
    each pair, micro-F0.5 (``calibrate_pair_threshold``); types: micro-F1 (``calibrate_threshold``)."""
    split, config = data.split, model.config
    samples = (split.val if samples is None else samples) + split.negatives
    emb = data.class_emb[(config.label_text, "val")]
    store = data.features_of(config)
    if config.task == "mre":
        d = score_pairs(model, store, samples, split.val_classes, emb, split.symmetric, config.eval_batch_size)
        threshold = calibrate_pair_threshold(d)
        return {"min_score": threshold, "statistic": PAIR_STATISTIC, "objective": f"micro-F{PAIR_BETA:g}",
                "calibrated_on": "validation classes", "negatives": len(split.negatives),
                "val": pair_metrics(d, threshold), **extra}
    scores = predict(model, store, samples, emb, config.eval_batch_size)
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


def grouped_batches(split: ClassSplit, steps: int, batch_size: int,
                    rng: np.random.Generator) -> list[tuple[list[str], list[Sample]]]:
    """An epoch's batches, each with the label set it is scored against. One label set: ``balanced_batches``
    over the training classes. Several (``ClassSplit.train_groups``): each set gets a share of the steps in
    proportion to its samples, class-balanced within the set, and the batches are shuffled together."""
    if not split.train_groups:
        return [(split.train_classes, b)
                for b in balanced_batches(split.train, split.train_classes, steps, batch_size, rng)]
    members = [[s for s in split.train if s.label in group] for group in split.train_groups]
    total = sum(len(m) for m in members)
    batches = []
    for group, samples in zip(split.train_groups, members):
        share = max(1, round(steps * len(samples) / total))
        batches += [(group, b) for b in balanced_batches(samples, group, share, batch_size, rng)]
    return [batches[i] for i in rng.permutation(len(batches))]


def training_batch(store: FeatureStore, samples: list[Sample], split: ClassSplit, config: MGVMoEConfig,
                   rng: np.random.Generator, classes: list[str] | None = None):
    """One training batch: the class-balanced ``samples``, then ``negatives_per_batch`` no-class samples drawn
    from the split's train negatives and ``reversed_per_batch`` of the batch's pairs read tail-first (no class
    unless their class is symmetric); both only teach the abstention terms, they are never a class. ``classes``:
    the label set the batch is scored against (default the split's training classes)."""
    classes = split.train_classes if classes is None else classes
    batch = store.batch(samples, classes)
    extra = []
    if config.negatives_per_batch:
        picks = rng.choice(len(split.train_negatives), config.negatives_per_batch, replace=False)
        extra.append(store.batch([split.train_negatives[int(k)] for k in picks], classes))
    if config.reversed_per_batch and config.task == "mre":
        asym = [s for s in samples if s.label not in split.symmetric][: config.reversed_per_batch]
        if asym:
            extra.append(store.batch([dataclasses.replace(s, label="None") for s in asym], classes, swap=True))
    return concat_batches([batch, *extra]) if extra else batch


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

    def store(self, text_input: str = "markers", depth: int = 0) -> FeatureStore:
        """Cached features of every sample of the pool; ``depth`` > 0: at the input of the encoder's top
        ``depth`` layers (for a config with ``tuned_layers``, see ``features_of``)."""
        key = (text_input, depth) if depth else text_input
        if key not in self.stores:
            # One cache per dataset pool: folds and split seeds re-partition the same samples.
            split = self.split
            samples = sorted(split.train + split.val + split.test + split.negatives + split.train_negatives
                             + split.test_negatives, key=lambda s: s.uid)
            self.stores[key] = self.cache.features(samples, split.task, split.name.split("-")[0], text_input, depth)
        return self.stores[key]

    def features_of(self, config: MGVMoEConfig) -> FeatureStore:
        """The features a model of ``config`` reads."""
        return self.store(config.text_input, config.tuned_layers)


def prepare(split: ClassSplit, cache: FeatureCache) -> PreparedSplit:
    emb = {}
    for mode in ("name", "description"):
        for part, classes in (("train", split.train_classes), ("val", split.val_classes), ("test", split.test_classes)):
            emb[(mode, part)] = cache.label_embeddings(classes, mode, split.task) if classes else torch.zeros(0, 1)
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
    metrics, _ = evaluate(checkpoint.model, data.features_of(config), samples, getattr(split, f"{part}_classes"),
                          data.class_emb[(config.label_text, part)], config.eval_batch_size)
    return metrics


def mixed_weights(initial: dict, trained: dict, weight: float) -> dict:
    """``initial + weight * (trained - initial)`` for every floating-point tensor of two state dicts of one model,
    the trained ones for the rest (``MGVMoEConfig.weight_mix``: WiSE-FT's weight-space ensemble); weight 1 returns
    ``trained`` itself, not a rounded copy."""
    if weight == 1:
        return trained
    return {k: initial[k] + weight * (v - initial[k]) if v.is_floating_point() else v for k, v in trained.items()}


def text_only_unless_images(config: MGVMoEConfig, split: ClassSplit) -> MGVMoEConfig:
    """``config`` with ``use_image`` off when no training sample has an image: the image path (``image_in``, the
    image side of the experts) then never gets a gradient and stays at its random initialisation, so a model that
    read images at inference would add that noise to every post with an image. Training is the same computation
    either way (an image-less batch takes the no-image token), so only the saved config changes: the checkpoint
    says it is text-only, and the pipeline does not read images for it (Twitter-2017 and WNUT-16, the typer's
    training sets, have none)."""
    if config.use_image and not any(s.image for s in split.train + split.train_negatives):
        log.info("no training sample has an image: training and saving the model text-only (use_image=False)")
        return dataclasses.replace(config, use_image=False)
    return config


def train(config: MGVMoEConfig, data: PreparedSplit, progress: bool = True, dry_run: bool = False) -> TrainResult:
    config = text_only_unless_images(config, data.split)
    split, store = data.split, data.features_of(config)
    if config.task != split.task:
        raise ValueError(f"config task {config.task} != split task {split.task}")
    started = time.perf_counter()
    seed_everything(config.seed)
    model = MGVMoE(config)
    if model.tuned is not None and data.cache is not None:
        model.tuned.copy_from(data.cache.text_encoder)  # start from the encoder's own top layers
    optimizer = torch.optim.Adam(model.parameter_groups(), lr=config.lr, weight_decay=config.weight_decay)
    r_optimizer = torch.optim.Adam([model.vat.r], lr=config.vat_lr)
    rng = np.random.default_rng(config.seed)
    emb = lambda part: data.class_emb[(config.label_text, part)]  # noqa: E731
    steps = config.steps_per_epoch or max(1, len(split.train) // config.batch_size)
    if config.negatives_per_batch and not split.train_negatives:
        raise ValueError(f"negatives_per_batch={config.negatives_per_batch} but split {split.name} has no train_negatives")
    best_f1, best_state, best_epoch, bad = -1.0, None, 0, 0
    history = []
    val_samples = split.val[: config.eval_batch_size] if dry_run else split.val

    def validate() -> dict:
        """The selection metric on validation classes only: macro-F1, or for ``selection="pair_f0.5"`` the
        micro-F0.5 of both readings of each pair at its best threshold, validation ``None`` pairs included."""
        val, _ = evaluate(model, store, val_samples, split.val_classes, emb("val"), config.eval_batch_size)
        if config.selection == "pair_f0.5":
            d = score_pairs(model, store, val_samples + split.negatives, split.val_classes, emb("val"),
                            split.symmetric, config.eval_batch_size)
            val["pair_threshold"] = calibrate_pair_threshold(d)
            val["pair_f05"] = pair_metrics(d, val["pair_threshold"])["micro_f05"]
        val["selection"] = val["pair_f05"] if config.selection == "pair_f0.5" else val["macro_f1"]
        return val

    # Epoch 0 = the untrained heads: with a similarity prior they are the label-similarity scorer, and
    # early stopping may keep them if training only hurts the validation classes.
    val = validate()
    if model.fit_offset is not None and "pair_threshold" in val:
        with torch.no_grad():  # the fit loss's 0.5 starts where the untrained scorer's threshold is
            model.fit_offset.fill_(val["pair_threshold"])
    history.append({"epoch": 0, "val_macro_f1": val["macro_f1"], "val_accuracy": val["accuracy"],
                    "val_selection": val["selection"], "seconds": 0.0})
    initial = copy.deepcopy(model.state_dict())  # the untrained model: what ``weight_mix`` mixes back in
    if config.similarity_prior > 0:  # random heads are never a candidate, the label-similarity start is
        best_f1, best_state = val["selection"], initial
    for epoch in range(1, config.epochs + 1):
        batches = grouped_batches(split, steps, config.batch_size, rng)
        sums: dict[str, float] = {}
        bar = tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False)
        for i, (classes, batch_samples) in enumerate(bar):
            rows = [split.train_classes.index(c) for c in classes]
            terms = training_step(model, training_batch(store, batch_samples, split, config, rng, classes),
                                  emb("train")[rows], optimizer, r_optimizer)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{terms['loss']:.3f}")
            if dry_run:
                break
        val = validate()
        row = {"epoch": epoch, **{f"train_{k}": v / (i + 1) for k, v in sums.items()},
               "val_macro_f1": val["macro_f1"], "val_accuracy": val["accuracy"], "val_selection": val["selection"],
               "seconds": time.perf_counter() - started}
        history.append(row)
        log.info("epoch %d loss %.4f val macro-F1 %.2f selection (%s) %.2f", epoch, row["train_loss"],
                 val["macro_f1"], config.selection, val["selection"])
        if val["selection"] > best_f1:
            best_f1, best_epoch, bad = val["selection"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= config.patience:
                break
        if dry_run:
            break
    model.load_state_dict(mixed_weights(initial, best_state, config.weight_mix))
    model.eval()
    if model.tuned is not None:  # scored and calibrated as the checkpoint will store it
        model.tuned.round_to_storage()
    result = TrainResult(model, config, history, best_epoch)
    result.val, _ = evaluate(model, store, val_samples, split.val_classes, emb("val"), config.eval_batch_size)
    result.thresholds = calibrate_thresholds(
        model, data, validation_file_samples(split) if config.calibrate_on == "validation-file" else val_samples,
        mix=config.calibrate_on)
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


def select(config: MGVMoEConfig, data: PreparedSplit, progress: bool = True,
           dry_run: bool = False) -> tuple[TrainResult, dict]:
    """Nested selection for a checkpoint: train the pipeline preset's candidate settings (``config`` with each of
    ``PIPELINE_CANDIDATES`` applied) and keep the one whose validation selection score is best (the first on a tie).
    Returns the kept run and what was compared, for the checkpoint card. Test classes play no part."""
    runs, rows = [], []
    for candidate in PIPELINE_CANDIDATES[config.task]:
        result = train(config.replace(**candidate), data, progress=progress, dry_run=dry_run)
        score = result.history[result.best_epoch]["val_selection"]
        runs.append(result)
        rows.append({"changes": candidate, "val_selection": score, "best_epoch": result.best_epoch})
        log.info("candidate %s: validation %s %.2f (epoch %d)", candidate, config.selection, score, result.best_epoch)
    k = choose(rows)
    return runs[k], {"metric": f"validation {config.selection}", "kept": rows[k]["changes"], "candidates": rows}


def choose(candidates: list[dict]) -> int:
    """Index of the candidate with the best validation score (the first one on a tie). Only ``val_selection``
    is read: a candidate's test score plays no part, whatever it is."""
    best = max(c["val_selection"] for c in candidates)
    return next(i for i, c in enumerate(candidates) if c["val_selection"] == best)


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
    config = {"pipeline": MGVMoEConfig.for_pipeline, "shipped": MGVMoEConfig.for_shipping}.get(
        preset, lambda task: MGVMoEConfig(task=task))(task)
    overrides = {k: v for k, v in {
        "seed": args.seed, "epochs": args.epochs, "patience": args.patience, "lr": args.lr, "beta": args.beta,
        "label_text": args.label_text, "fusion": args.fusion, "batch_size": args.batch_size,
        "similarity_prior": args.similarity_prior, "text_input": args.text_input, "prior_pool": args.prior_pool,
        "fit_weight": args.fit_weight, "negatives_per_batch": args.negatives_per_batch,
        "reversed_per_batch": args.reversed_per_batch, "tuned_layers": args.tuned_layers, "tuned_lr": args.tuned_lr,
        "steps_per_epoch": args.steps_per_epoch, "kl_free_bits": args.kl_free_bits, "vat_weight": args.vat_weight,
        "weight_mix": args.weight_mix,
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
    parser.add_argument("--fit-weight", type=float, help="weight of the per-class 'does it fit at all' loss")
    parser.add_argument("--negatives-per-batch", type=int,
                        help="no-class samples (the split's train negatives) per batch: abstention is trained")
    parser.add_argument("--reversed-per-batch", type=int,
                        help="MRE: training pairs read tail-first per batch, as no-class samples (direction is trained)")
    parser.add_argument("--tuned-layers", type=int,
                        help="fine-tune the text encoder's top N layers with the heads (0: frozen encoder)")
    parser.add_argument("--tuned-lr", type=float, help="step size of the tuned encoder layers")
    parser.add_argument("--steps-per-epoch", type=int, help="batches per epoch (0: one pass over the training samples)")
    parser.add_argument("--kl-free-bits", type=float, help="VMoE KL free bits, nats per token (0: none, the reference)")
    parser.add_argument("--vat-weight", type=float, help="weight of L_VAT inside beta's bracket (1: the reference)")
    parser.add_argument("--weight-mix", type=float,
                        help="keep init + W * (trained - init), WiSE-FT (1: the trained weights; needs the similarity prior)")
    for flag in ("vmoe", "vat", "infonce", "image"):
        parser.add_argument(f"--no-{flag}", action="store_true", help=f"ablation: use_{flag}=False")


#: What the command prints in place of the test classes' scores unless asked (``--report-test``).
TEST_HIDDEN = "scored, not shown: --report-test prints it (no choice may read it; bench.zero_shot reports test)"


def run_summary(split_name: str, result, selection: dict | None = None, report_test: bool = False) -> dict:
    """What ``python -m models.train`` prints. The test classes' scores only with ``report_test``: a run made to
    compare settings must read validation alone, and a score on screen is a score read (the checkpoint card
    still records them, for the model's documentation)."""
    return {"split": split_name, "best_epoch": result.best_epoch, "val": result.val,
            "test": result.test if report_test else TEST_HIDDEN,
            "thresholds": result.thresholds, "inference_mode_check": result.inference_mode_check,
            "seconds": round(result.seconds, 1), **({"selection": selection} if selection else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="mnre", help="mnre | mnre-seedN | wnut16-foldK | wnut16-pipeline | mnre-pipeline | mnre-all-relations | tweets-all-types[+fp|+events|+events+mnre|+events+mnre-per-loc]; an entity split with +masked: a share of its training mentions also with the name hidden")
    parser.add_argument("--out", help="checkpoint directory to write (none: report only)")
    parser.add_argument("--name", help="checkpoint name (default: directory name)")
    parser.add_argument("--dry-run", action="store_true", help="stop after one training batch")
    parser.add_argument("--preset", choices=["reference", "pipeline", "shipped"], default="reference",
                        help="reference: MG-VMoE as specified; pipeline: MGVMoEConfig.for_pipeline (each post encoded "
                             "once); shipped: MGVMoEConfig.for_shipping, how the shipped checkpoints are trained")
    parser.add_argument("--select", action="store_true",
                        help="with --preset pipeline: train every candidate setting (models.config.PIPELINE_CANDIDATES) "
                             "and keep the one best on the split's validation classes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the dev box has 2 shared cores)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--report-test", action="store_true",
                        help="also print the test classes' scores (hidden by default: choose on validation only)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.select and args.preset != "pipeline":
        parser.error("--select chooses among the pipeline preset's candidates: add --preset pipeline")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    split = load_split(args.split)
    config = config_from_args(args, split.task, args.preset)
    config.extra = {"split": split.name}
    data = prepare(split, FeatureCache(config.text_encoder, config.image_encoder, config.max_length))
    selection = None
    if args.select:
        result, selection = select(config, data, progress=not args.no_progress, dry_run=args.dry_run)
    else:
        result = train(config, data, progress=not args.no_progress, dry_run=args.dry_run)
    print(json.dumps(run_summary(split.name, result, selection, report_test=args.report_test), indent=2))
    if args.out and not args.dry_run:
        from pathlib import Path

        from models.checkpoint import save_checkpoint

        name = args.name or Path(args.out).name
        card = checkpoint_card(name, result, data) | ({"selection": selection} if selection else {})
        save_checkpoint(args.out, result.model, data.marker_embeddings, card)
        print(f"checkpoint written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
