"""Zero-shot relations with "no relation": unseen test relations beside the test file's ``None`` pairs.

    python -m bench.zero_shot.relations                        # split seeds 0-4: relations.md/json, relations_pr.png
    python -m bench.zero_shot.relations --split-seeds 0 --dry-run

Protocol, per MNRE class-split seed k (``models.data.load_mnre``): trained systems learn on the 8 train
relations (and, where the system uses them, the train file's ``None`` pairs); early stopping, the
abstention threshold and the choice among a system's candidate settings (its grid: argument-prior weight and
input; nested selection, as ``bench.zero_shot.run``) see only the 7 validation relations and the validation
file's ``None`` pairs of split seed k; the 7 test
relations and the test file's ``None`` pairs are scored once. Every pair is read both ways; the best (relation,
reading) over the test relations is kept when its raw score clears the threshold chosen on validation (max
micro-F0.5); it is right only with the gold relation in the gold direction (either direction for a symmetric
relation, ``models.data.MNRE_SYMMETRIC``). Micro P/R/F1/F0.5 over non-None predictions, the standard MNRE
metric with "no relation" in the pool. What this must never do: choose anything on a test relation or a test
``None`` pair.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.zero_shot.run import TUNED_CHANGES, TWIN_CHANGES, machine
from models.config import MGVMoEConfig
from models.data import load_split
from models.features import FeatureCache
from models.train import (
    PairDecisions,
    PreparedSplit,
    calibrate_pair_threshold,
    choose,
    decide_pairs,
    f_beta,
    pair_metrics,
    pr_curve,
    predict,
    prepare,
    score_pairs,
    train,
    with_min_gap,
)

HERE = Path(__file__).resolve().parent
log = logging.getLogger("bench.zero_shot.relations")

#: The relation preset before this protocol existed: no argument prior, early stopping on macro-F1.
BEFORE = dict(argument_prior=0.0, selection="macro_f1")
#: Trained on the train file's None pairs and on reversed pairs with the fit loss (tried, not shipped).
WITH_NONE = dict(fit_weight=1.0, negatives_per_batch=16, reversed_per_batch=8)
#: The top encoder layer fine-tuned (issue 11 item 2) on seen relations, the train file's None pairs and reversed
#: pairs; the heads stay at the priors (``lr=0``), so what is learned is how the encoder reads a pair.
#: (The benchmark keeps its own pooled calibration: its test mix is pooled too; one definition, ``run.TUNED_CHANGES``.)
TUNED = TUNED_CHANGES["mre"]
TUNED_NAME = "MG-VMoE, top encoder layer fine-tuned (None + reversed pairs)"
SHIPPED = "MG-VMoE (shipped preset: argument prior, F0.5 selection)"
TWIN = "text-only twin of the shipped preset (- image, - VMoE)"
#: The twin of ``TUNED_NAME``: the same encoder training (top layer, None + reversed pairs), minus image and VMoE.
TUNED_TWIN_NAME = "text-only twin, top encoder layer fine-tuned alike (- image, - VMoE)"
#: The tuned system with the relation stage's ambiguity gap beside its threshold (``extraction.mg_vmoe.RelationRule``),
#: both chosen per split seed on validation relations + validation ``None`` pairs, among ``GAPS``; the same trained
#: model as ``TUNED_NAME`` (not trained again).
TUNED_GAP_NAME = "MG-VMoE, top encoder layer fine-tuned, + ambiguity gap (gap and threshold chosen on validation)"
GAPS = (None, 0.5, 1.0, 1.5, 2.0, 3.0)
#: The tuned system with its kept weights mixed halfway back to their untrained start (``MGVMoEConfig.weight_mix``,
#: WiSE-FT, as the typer ships since c0d207d): the heads stay at the priors, so the mix halves what the top layer and
#: the role embeddings learned. Its transfer beside ``TUNED_NAME`` decides whether the relation checkpoint ships it.
TUNED_MIXED_NAME = "MG-VMoE, top encoder layer fine-tuned, weights mixed halfway back (weight_mix 0.5)"
#: What nested selection chooses among, per split seed, on its validation relations: the argument prior's weight
#: (10 = the description prior's, 20 = the shipped 2x, 40) and what it reads of each entity.
ARGUMENT_GRID = ({"argument_prior": 20.0, "argument_input": "both"}, {"argument_prior": 10.0, "argument_input": "both"},
                 {"argument_prior": 40.0, "argument_input": "both"}, {"argument_prior": 20.0, "argument_input": "span"})
#: Trained systems: name -> (config changes on ``MGVMoEConfig.for_pipeline("mre")``, candidates).
SYSTEMS: dict[str, tuple[dict, tuple[dict, ...]]] = {
    "MG-VMoE before (no argument prior, macro-F1 selection)": (BEFORE, ({},)),
    SHIPPED: ({}, ARGUMENT_GRID),
    "MG-VMoE + None and reversed pairs (fit loss)": (WITH_NONE, ({},)),
    TWIN: (TWIN_CHANGES, ARGUMENT_GRID),
    TUNED_NAME: (TUNED, ({},)),
    TUNED_TWIN_NAME: (TUNED | TWIN_CHANGES, ({},)),
    TUNED_MIXED_NAME: (TUNED | dict(weight_mix=0.5), ({},)),
}
#: Label similarity + argument prior: the prior's weight relative to the description prior, chosen on validation.
SIMILARITY_ARGUMENT_WEIGHTS = (2.0, 1.0, 4.0)
LABEL_SIMILARITY = "label similarity (descriptions, post), calibrated threshold"
LABEL_SIMILARITY_ARGS = "label similarity + argument prior (untrained), calibrated threshold"
KEEP_ALL = "keep every pair (both readings, no threshold; scores of MG-VMoE before)"


def label_similarity_scores(data: PreparedSplit, samples, part: str, argument_weight: float = 0.0,
                            swap: bool = False) -> torch.Tensor:
    """No training: cosine of the plain post's mean token state with each relation description (the MRE
    similarity prior on its own; blind to direction), plus ``argument_weight`` x the argument-type prior
    (cos(head span, head type) + cos(tail span, tail type)), with the weights of the shipped preset."""
    store = data.store("spans")
    rows = [store.row[s.uid] for s in samples]
    labels = F.normalize(data.class_emb[("description", part)], dim=-1)
    ctx = F.normalize(torch.stack([store.text[i].float().mean(0) for i in rows]), dim=-1)
    scores = ctx @ labels[:, 0].t()
    if argument_weight:
        spans = [[F.normalize(store.text[i][int(store.span_bounds[i, j, 0]):int(store.span_bounds[i, j, 1])]
                              .float().mean(0), dim=-1) for i in rows] for j in ((1, 0) if swap else (0, 1))]
        head, tail = torch.stack(spans[0]), torch.stack(spans[1])
        scores = scores + argument_weight * (head @ labels[:, 1].t() + tail @ labels[:, 2].t())
    return scores


def keep_all_metrics(forward: torch.Tensor, backward: torch.Tensor, samples, classes, symmetric) -> dict:
    """Today's relation stage: every pair written both ways, each reading with its best relation."""
    gold = [classes.index(s.label) if s.label in classes else -1 for s in samples]
    sym = {classes.index(c) for c in symmetric if c in classes}
    right = 0
    for g, f, b in zip(gold, forward.argmax(1).tolist(), backward.argmax(1).tolist()):
        right += (g >= 0 and f == g) + (g >= 0 and b == g and g in sym)
    kept, positives = 2 * len(samples), sum(g >= 0 for g in gold)
    p, r = right / kept, right / positives
    none = sum(g < 0 for g in gold)
    return {"micro_p": 100 * p, "micro_r": 100 * r, "micro_f1": 100 * f_beta(p, r, 1.0),
            "micro_f05": 100 * f_beta(p, r, 0.5), "kept": kept,
            "pairs": len(samples), "positives": positives, "none_pairs": none, "none_given_relation": none,
            "none_given_relation_pct": 100.0, "threshold": float("-inf"), "pairs_written_both_ways": len(samples)}


def curve_points(d: PairDecisions, n: int = 60) -> list[list[float]]:
    """(recall, precision) at n thresholds, for the plot."""
    _, p, r = pr_curve(d)
    idx = torch.linspace(0, len(p) - 1, min(n, len(p))).long()
    return [[round(100 * float(r[i]), 2), round(100 * float(p[i]), 2)] for i in idx]


def evaluate_system(decide_val, decide_test, gaps: tuple = (None,)) -> dict:
    """Threshold chosen on the validation decisions, applied once to the test decisions. With ``gaps``, the
    pipeline's ambiguity gap too (``extraction.mg_vmoe.RelationRule.min_gap``): for each candidate gap the
    threshold is chosen on validation, and the (gap, threshold) with the best validation micro-F0.5 is kept
    (ties: the first in ``gaps``)."""
    val_d, test_d = decide_val(), decide_test()
    best = None
    for gap in gaps:
        threshold = calibrate_pair_threshold(with_min_gap(val_d, gap))
        val = pair_metrics(with_min_gap(val_d, gap), threshold)
        if best is None or val["micro_f05"] > best[2]["micro_f05"]:
            best = (gap, threshold, val)
    gap, threshold, val = best
    test = pair_metrics(with_min_gap(test_d, gap), threshold) | {"pairs_written_both_ways": 0}
    return {"val": val, "test": test, "curve": curve_points(with_min_gap(test_d, gap)),
            **({"min_gap": gap} if len(gaps) > 1 else {})}


def run_split(split_seed: int, train_seeds: list[int], systems: list[str], cache: FeatureCache, dry_run: bool) -> dict:
    split = load_split(f"mnre-seed{split_seed}")
    data = prepare(split, cache)
    store = data.store("spans")
    val_samples, test_samples = split.val + split.negatives, split.test + split.test_negatives
    out: dict = {"split": split.describe(), "systems": {}}

    ls_val = label_similarity_scores(data, val_samples, "val")
    ls_test = label_similarity_scores(data, test_samples, "test")
    out["systems"][LABEL_SIMILARITY] = [evaluate_system(
        lambda: decide_pairs(ls_val, ls_val, val_samples, split.val_classes, split.symmetric),
        lambda: decide_pairs(ls_test, ls_test, test_samples, split.test_classes, split.symmetric))]
    candidates = []
    for w in SIMILARITY_ARGUMENT_WEIGHTS:
        run = evaluate_system(
            lambda w=w: decide_pairs(label_similarity_scores(data, val_samples, "val", w),
                                     label_similarity_scores(data, val_samples, "val", w, swap=True),
                                     val_samples, split.val_classes, split.symmetric),
            lambda w=w: decide_pairs(label_similarity_scores(data, test_samples, "test", w),
                                     label_similarity_scores(data, test_samples, "test", w, swap=True),
                                     test_samples, split.test_classes, split.symmetric))
        candidates.append(run | {"changes": {"argument_weight": w}, "val_selection": run["val"]["micro_f05"]})
    out["systems"][LABEL_SIMILARITY_ARGS] = [kept(candidates)]

    for system in systems:
        base, grid = SYSTEMS[system]
        for seed in train_seeds:
            candidates, gap_candidates = [], []
            for changes in grid:
                config = MGVMoEConfig.for_pipeline("mre", seed=seed, **(base | changes))
                if dry_run:
                    config = config.replace(epochs=1)
                started = time.perf_counter()
                result = train(config, data, progress=False, dry_run=dry_run)
                store = data.features_of(config)
                emb = lambda part: data.class_emb[(config.label_text, part)]  # noqa: E731
                val_d = score_pairs(result.model, store, val_samples, split.val_classes, emb("val"), split.symmetric)
                test_d = score_pairs(result.model, store, test_samples, split.test_classes, emb("test"),
                                     split.symmetric)
                run = evaluate_system(lambda: val_d, lambda: test_d)
                if system == TUNED_NAME:
                    gap_candidates.append(evaluate_system(lambda: val_d, lambda: test_d, GAPS) | {
                        "seed": seed, "changes": changes, "best_epoch": result.best_epoch, "seconds": 0.0})
                    gap_candidates[-1]["val_selection"] = gap_candidates[-1]["val"]["micro_f05"]
                run |= {"seed": seed, "changes": changes, "val_selection": run["val"]["micro_f05"],
                        "best_epoch": result.best_epoch, "seconds": round(time.perf_counter() - started, 1),
                        "history": result.history}
                if base is BEFORE:
                    forward = predict(result.model, store, test_samples, emb("test"))
                    backward = predict(result.model, store, test_samples, emb("test"), swap=True)
                    out["systems"].setdefault(KEEP_ALL, []).append(
                        {"seed": seed, "test": keep_all_metrics(forward, backward, test_samples, split.test_classes,
                                                                split.symmetric)})
                candidates.append(run)
            run = kept(candidates)
            out["systems"].setdefault(system, []).append(run)
            if gap_candidates:
                out["systems"].setdefault(TUNED_GAP_NAME, []).append(kept(gap_candidates))
            log.info("split %d %-60s seed %d kept %s test P %.1f R %.1f F0.5 %.1f (%.0fs)", split_seed, system, seed,
                     run["chosen"], run["test"]["micro_p"], run["test"]["micro_r"], run["test"]["micro_f05"],
                     run["seconds"])
    return out


def kept(candidates: list[dict]) -> dict:
    """The validation-best candidate (micro-F0.5 on validation relations + validation ``None`` pairs), with what
    the others scored beside it (their test scores are recorded, never read for the choice)."""
    best = candidates[choose(candidates)]
    return {k: v for k, v in best.items() if k != "changes"} | {
        "chosen": best["changes"], "seconds": round(sum(c.get("seconds", 0.0) for c in candidates), 1),
        "candidates": [{"changes": c["changes"], "val_f05": c["val"]["micro_f05"], "test_f05": c["test"]["micro_f05"]}
                       for c in candidates]}


def summary(results: dict) -> dict:
    """system -> metric -> (mean, std) over split seeds (each split seed's mean over training seeds)."""
    table: dict = {}
    systems = {s for r in results["splits"].values() for s in r["systems"]}
    for system in systems:
        per_split = {}
        for k, r in results["splits"].items():
            runs = r["systems"].get(system)
            if runs:
                per_split[k] = {m: statistics.mean(run["test"][m] for run in runs)
                                for m in ("micro_p", "micro_r", "micro_f1", "micro_f05", "none_given_relation_pct")}
        table[system] = per_split
    return table


def write_markdown(results: dict, path: Path) -> None:
    table = summary(results)
    order = [KEEP_ALL, LABEL_SIMILARITY, LABEL_SIMILARITY_ARGS, *SYSTEMS, TUNED_GAP_NAME]
    seeds = sorted(results["splits"], key=int)
    lines = ["# Zero-shot relations with \"no relation\" (MNRE, unseen test relations + test `None` pairs)", "",
             f"Generated by `python -m bench.zero_shot.relations` ({results['finished']}), split seeds "
             f"{', '.join(seeds)}, training seeds {results['train_seeds']}; wall time "
             f"**{results['seconds'] / 60:.1f} min** on {results['machine']['cpu']} "
             f"({results['machine']['logical_cpus']} logical CPUs, shared; torch threads "
             f"{results['machine']['torch_threads']}).", "",
             "Each pair is read both ways; the best (relation, reading) is kept above a threshold chosen on the split's "
             "validation relations + validation `None` pairs (max micro-F0.5); right = gold relation in gold direction "
             "(either for symmetric relations). Nested selection: on each split seed, a system's candidate settings "
             "(argument-prior weight and input; label similarity's argument weight) are chosen on that seed's "
             "validation relations + validation `None` pairs only (micro-F0.5); the kept candidate's test score is "
             "reported. No choice reads a test relation of any split seed.", ""]
    for k in seeds:
        r = results["splits"][k]
        sizes = r["split"]["sizes"]
        lines += [f"## Split seed {k}: {sizes['test']} test-relation pairs + {sizes['test_negatives']} `None` pairs", "",
                  "| system | micro P | micro R | micro F1 | **micro F0.5** | `None` pairs given a relation | "
                  "pairs written both ways | threshold (val) |", "|---|---|---|---|---|---|---|---|"]
        for system in order:
            runs = r["systems"].get(system)
            if not runs:
                continue
            m = {key: statistics.mean(run["test"][key] for run in runs) for key in
                 ("micro_p", "micro_r", "micro_f1", "micro_f05", "none_given_relation_pct", "pairs_written_both_ways")}
            thr = runs[0]["test"]["threshold"]
            gap = f", gap {runs[0]['min_gap']}" if "min_gap" in runs[0] else ""
            lines.append(f"| {system} | {m['micro_p']:.1f} | {m['micro_r']:.1f} | {m['micro_f1']:.1f} | "
                         f"**{m['micro_f05']:.1f}** | {m['none_given_relation_pct']:.0f}% | "
                         f"{m['pairs_written_both_ways']:.0f} | {thr:.3g}{gap}{' (seed 0)' if len(runs) > 1 else ''} |")
        lines.append("")
    lines += ["## Mean over split seeds (micro F0.5, and P / R)", "", "| system | F0.5 | P | R | F0.5 by split seed |",
              "|---|---|---|---|---|"]
    for system in order:
        if system not in table or not table[system]:
            continue
        per = table[system]
        mean = lambda key: statistics.mean(v[key] for v in per.values())  # noqa: E731
        lines.append(f"| {system} | {mean('micro_f05'):.1f} | {mean('micro_p'):.1f} | {mean('micro_r'):.1f} | "
                     + ", ".join(f"{k}: {per[k]['micro_f05']:.1f}" for k in sorted(per, key=int)) + " |")
    lines += ["", "## What nested selection kept (split seed: candidate)", ""]
    for system in order:
        picks = [f"{k}: `{json.dumps(run['chosen'], sort_keys=True)}`" for k in seeds
                 for run in results["splits"][k]["systems"].get(system, []) if "chosen" in run]
        if picks:
            lines.append(f"- {system}: " + "; ".join(picks))
    lines += ["", "Plot: `relations_pr.png` (test precision-recall curves of split seed 0, the validation-chosen "
              "operating point marked).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def plot(results: dict, path: Path, split_seed: str = "0") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = results["splits"].get(split_seed)
    if r is None:
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    for system, runs in r["systems"].items():
        run = runs[0]
        if "curve" in run:
            xs, ys = zip(*run["curve"])
            line, = ax.plot(xs, ys, label=system, linewidth=1.2)
            ax.plot(run["test"]["micro_r"], run["test"]["micro_p"], "o", color=line.get_color())
        else:
            ax.plot(run["test"]["micro_r"], run["test"]["micro_p"], "x", markersize=9, label=system)
    ax.axhline(45, color="grey", linestyle=":", linewidth=0.8)
    ax.axvline(35, color="grey", linestyle=":", linewidth=0.8)
    ax.set(xlabel="micro recall (%)", ylabel="micro precision (%)", xlim=(0, 100), ylim=(0, 100),
           title=f"MNRE unseen relations + None pairs, split seed {split_seed} (dots: threshold chosen on val)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zero_shot.relations", description=__doc__.split("\n")[0])
    parser.add_argument("--split-seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true", help="one batch per run, first split seed, no files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    split_seeds = args.split_seeds[:1] if args.dry_run else args.split_seeds
    results = {"train_seeds": args.train_seeds, "machine": machine(), "splits": {},
               "shipped_config": MGVMoEConfig.for_shipping("mre").to_dict()}
    cache = FeatureCache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k in split_seeds:
        results["splits"][str(k)] = run_split(k, args.train_seeds, args.systems, cache, args.dry_run)
        if not args.dry_run:
            (out / "relations.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    results["seconds"] = time.perf_counter() - started
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.dry_run:
        print(f"dry run OK in {results['seconds']:.0f}s")
        return 0
    (out / "relations.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    write_markdown(results, out / "relations.md")
    plot(results, out / "relations_pr.png")
    print((out / "relations.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
