"""Zero-shot benchmark: MNRE (relations, seed-0 class split) and WNUT-16 (entity types, 3 folds).

    python -m bench.zero_shot                 # the full benchmark (3 seeds), writes results.md/json + plots
    python -m bench.zero_shot --dry-run       # one batch per run, one seed: a smoke test of the harness

Every system runs in this one harness on the same splits and the same cached frozen-encoder features.
Model selection (early stopping) sees validation classes only; test classes are scored once per run.
Reports macro-P/R/F1 and accuracy on the unseen test classes, mean +- std over training seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from models.config import MGVMoEConfig
from models.data import load_split
from models.features import FeatureCache
from models.train import PreparedSplit, prepare, train, zero_shot_metrics

HERE = Path(__file__).resolve().parent
SPLITS = ("mnre", "wnut16-fold1", "wnut16-fold2", "wnut16-fold3")
TEXT_ONLY = dict(fusion="none", use_vmoe=False, use_vat=False, use_infonce=False, use_image=False)
#: Trained systems: name -> config changes. All share the harness, data, encoder features and seeds.
SYSTEMS: dict[str, dict] = {
    "text-only prototype (names)": TEXT_ONLY,
    "text-only prototype (descriptions)": TEXT_ONLY | dict(label_text="description"),
    "concat multimodal (names)": dict(fusion="concat", use_vmoe=False, use_vat=False, use_infonce=False),
    "MG-VMoE (names)": {},
    "MG-VMoE (descriptions)": dict(label_text="description"),
    "MG-VMoE w/o VMoE": dict(use_vmoe=False),
    "MG-VMoE w/o MG-VAT": dict(use_vat=False),
    "MG-VMoE w/o InfoNCE": dict(use_infonce=False),
    # Not in the reference: start from label similarity (prior 10, chosen on validation classes of MNRE and
    # WNUT fold 1 among {10, 30}) and learn a correction; the prototype variant separates prior from model.
    "MG-VMoE + similarity prior (descriptions)": dict(label_text="description", similarity_prior=10.0),
    "text-only prototype + similarity prior (descriptions)": TEXT_ONLY | dict(label_text="description",
                                                                              similarity_prior=10.0),
    # What the pipeline ships (MGVMoEConfig.for_pipeline): each post encoded once, entities as span means,
    # the prior over the mention span (types) / the plain post (relations), lr 1e-4; and its text-only twin.
    "MG-VMoE pipeline (encode once, span prior)": dict(pipeline=True),
    "text-only prototype, pipeline settings": TEXT_ONLY | dict(pipeline=True),
}
BASELINES = ("label similarity (names)", "label similarity (descriptions)", "text-only prototype (names)",
             "text-only prototype (descriptions)", "concat multimodal (names)",
             "text-only prototype + similarity prior (descriptions)", "label similarity (descriptions, spans)",
             "text-only prototype, pipeline settings")


def system_config(system: str, task: str, seed: int) -> MGVMoEConfig:
    changes = dict(SYSTEMS[system])
    if changes.pop("pipeline", False):
        return MGVMoEConfig.for_pipeline(task, seed=seed, **changes)
    return MGVMoEConfig(task=task, seed=seed, **changes)

log = logging.getLogger("bench.zero_shot")


def label_similarity(data: PreparedSplit, mode: str, part: str = "test", pool: str = "marked") -> tuple[dict, list[str]]:
    """No training: cosine between a frozen embedding of the sample and each label. ``pool="marked"``:
    the mean-pooled marked context; ``pool="spans"``: exactly the pipeline prior's input, the mention
    span's mean in the plain post (types) or the plain post's mean (relations)."""
    split = data.split
    samples = getattr(split, part)
    classes = getattr(split, f"{part}_classes")
    if pool == "marked":
        store = data.store("markers")
        ctx = torch.stack([store.text[store.row[s.uid]][1:-1].float().mean(0) for s in samples])
    else:
        store = data.store("spans")
        rows = [store.row[s.uid] for s in samples]
        if split.task == "met":
            ctx = torch.stack([store.text[i][int(store.span_bounds[i, 0, 0]):int(store.span_bounds[i, 0, 1])].float().mean(0)
                               for i in rows])
        else:
            ctx = torch.stack([store.text[i].float().mean(0) for i in rows])
    labels = data.class_emb[(mode, part)]
    labels = labels[:, 0] if labels.ndim == 3 else labels  # relations: the label row (relation_label_embeddings)
    sims = F.normalize(ctx, dim=-1) @ F.normalize(labels, dim=-1).t()
    pred = [classes[i] for i in sims.argmax(1).tolist()]
    return zero_shot_metrics([s.label for s in samples], pred, classes), pred


def machine() -> dict:
    import os

    from bench.machine import cpu_model

    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def mean_std(values: list[float]) -> tuple[float, float]:
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else (0.0, 0.0)


def summarise(results: dict) -> dict:
    """system -> split -> metric -> (mean, std) over seeds; plus 'wnut16-mean' over folds (per seed)."""
    table: dict = {}
    for system, by_split in results["runs"].items():
        table[system] = {}
        for split, runs in by_split.items():
            table[system][split] = {m: mean_std([r["test"][m] for r in runs])
                                    for m in ("macro_p", "macro_r", "macro_f1", "accuracy")}
        folds = [s for s in by_split if s.startswith("wnut16-fold")]
        if folds:
            n = min(len(by_split[f]) for f in folds)
            table[system]["wnut16-mean"] = {
                m: mean_std([statistics.mean(by_split[f][i]["test"][m] for f in folds) for i in range(n)])
                for m in ("macro_p", "macro_r", "macro_f1", "accuracy")}
    return table


def write_markdown(results: dict, path: Path) -> None:
    table = summarise(results)
    splits = [s for s in ("mnre", "wnut16-fold1", "wnut16-fold2", "wnut16-fold3", "wnut16-mean")
              if any(s in v for v in table.values())]
    fmt = lambda ms: f"{ms[0]:.1f} ± {ms[1]:.1f}"  # noqa: E731
    lines = ["# Zero-shot benchmark: MG-VMoE vs baselines", "",
             f"Generated by `python -m bench.zero_shot` ({results['finished']}); "
             f"seeds {results['seeds']}; total wall time **{results['seconds'] / 60:.1f} min** on "
             f"{results['machine']['cpu']} ({results['machine']['logical_cpus']} logical CPUs, shared; "
             f"torch threads {results['machine']['torch_threads']}).", "",
             *([f"This run re-ran {len(results['runs']) - len(results['kept_from']['systems'])} systems with `--merge`; "
                f"the runs of {', '.join(results['kept_from']['systems'])} are kept from the run finished "
                f"{results['kept_from']['finished']} ({results['kept_from']['seconds'] / 60:.1f} min), same harness, "
                "splits, seeds and features.", ""] if results.get("kept_from") else []),
             "Test classes are unseen in training and in model selection (early stopping on validation classes). "
             "Label similarity has no training, so it has no seed spread. MNRE: seed-0 relation split "
             "(8 train / 7 val / 7 test relations); WNUT-16: 3 folds of 3 types each; `wnut16-mean` = mean over "
             "folds, spread over seeds.", "",
             "## Macro-F1 on unseen test classes (mean ± std over seeds)", "",
             "| system | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for system, row in table.items():
        lines.append(f"| {system} | " + " | ".join(fmt(row[s]["macro_f1"]) if s in row else "–" for s in splits) + " |")
    lines += ["", "## All metrics (macro-P / macro-R / macro-F1 / accuracy)", ""]
    for s in splits:
        lines += [f"### {s}", "", "| system | macro-P | macro-R | macro-F1 | accuracy |", "|---|---|---|---|---|"]
        for system, row in table.items():
            if s in row:
                r = row[s]
                lines.append(f"| {system} | {fmt(r['macro_p'])} | {fmt(r['macro_r'])} | {fmt(r['macro_f1'])} | "
                             f"{fmt(r['accuracy'])} |")
        lines.append("")
    lines += ["## Does MG-VMoE beat the best baseline by 5 macro-F1?", ""]
    for s in splits:
        if "MG-VMoE (names)" not in table or s not in table["MG-VMoE (names)"]:
            continue
        best_mg = max((sy for sy in ("MG-VMoE (names)", "MG-VMoE (descriptions)",
                                     "MG-VMoE + similarity prior (descriptions)",
                                     "MG-VMoE pipeline (encode once, span prior)") if s in table.get(sy, {})),
                      key=lambda sy: table[sy][s]["macro_f1"][0])
        bases = [b for b in BASELINES if s in table.get(b, {})]
        if not bases:
            continue
        best_base = max(bases, key=lambda b: table[b][s]["macro_f1"][0])
        gap = table[best_mg][s]["macro_f1"][0] - table[best_base][s]["macro_f1"][0]
        verdict = "yes" if gap >= 5 else "**no**"
        lines.append(f"- {s}: best MG-VMoE = {best_mg} {table[best_mg][s]['macro_f1'][0]:.1f}; best baseline = "
                     f"{best_base} {table[best_base][s]['macro_f1'][0]:.1f}; gap {gap:+.1f} -> {verdict}")
    checks = [r.get("inference_mode_check") for runs in results["runs"].get("MG-VMoE (names)", {}).values()
              for r in runs if r.get("inference_mode_check")]
    if checks:
        mu = statistics.mean(c["val_macro_f1_mu"] for c in checks)
        sampled = statistics.mean(c["val_macro_f1_sampled"] for c in checks)
        lines += ["", "## Inference with the mean μ or a sample (validation classes, MG-VMoE names, all runs)", "",
                  f"mean val macro-F1 with μ: {mu:.2f}; with one sampled z: {sampled:.2f} "
                  f"({len(checks)} runs). The shipped model uses {'μ' if mu >= sampled else 'sampling'}."]
    if results.get("skipped"):
        lines += ["", "## Skipped runs", ""]
    for note in results.get("skipped", []):
        lines.append(f"- {note}")
    lines += ["", "## Run times (seconds per training run, mean over seeds and splits)", "",
              "| system | s/run |", "|---|---|"]
    for system, by_split in results["runs"].items():
        secs = [r["seconds"] for runs in by_split.values() for r in runs if "seconds" in r]
        if secs:
            lines.append(f"| {system} | {statistics.mean(secs):.1f} |")
    lines += ["", "Plots: `curves.png` (validation macro-F1 and training loss per epoch, MG-VMoE names, seed 0), "
              "`confusion_mnre.png`, `confusion_wnut16-fold1.png` (MG-VMoE names, seed 0, test classes).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def plot_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for split, runs in results["runs"].get("MG-VMoE (names)", {}).items():
        hist = [h for h in runs[0]["history"] if "train_loss" in h]
        a.plot([h["epoch"] for h in hist], [h["val_macro_f1"] for h in hist], marker="o", label=split)
        b.plot([h["epoch"] for h in hist], [h["train_loss"] for h in hist], marker="o", label=split)
    a.set(title="MG-VMoE validation-class macro-F1", xlabel="epoch", ylabel="macro-F1")
    b.set(title="MG-VMoE training loss (total)", xlabel="epoch", ylabel="loss")
    a.legend(), b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(gold: list[str], pred: list[str], classes: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(gold, pred, labels=classes)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7)
    ax.set(title=title, xlabel="predicted", ylabel="gold")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zero_shot", description=__doc__.split("\n")[0])
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), help="subset of the trained systems")
    parser.add_argument("--out", default=str(HERE), help="where results.md/json and plots go")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true", help="one batch per run, first seed only, no files")
    parser.add_argument("--merge", action="store_true",
                        help="re-run only --systems (and the untrained baselines); keep every other system's runs "
                             "from the existing results.json, noted as such in results.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    seeds = args.seeds[:1] if args.dry_run else args.seeds
    started = time.perf_counter()
    results = {"seeds": seeds, "machine": machine(), "splits": {}, "runs": {}, "config_defaults": MGVMoEConfig().to_dict()}
    if args.merge and (out / "results.json").is_file():
        previous = json.loads((out / "results.json").read_text(encoding="utf-8"))
        kept = {k: v for k, v in previous["runs"].items()
                if k not in args.systems and not k.startswith("label similarity")}
        results["runs"] = kept
        results["kept_from"] = {"finished": previous.get("finished"), "seconds": previous.get("seconds"),
                                "systems": list(kept)}
    cache = FeatureCache()
    confusions = {}
    for split_name in args.splits:
        split = load_split(split_name)
        data = prepare(split, cache)
        for mode, pool, key in (("name", "marked", "label similarity (names)"),
                                ("description", "marked", "label similarity (descriptions)"),
                                ("description", "spans", "label similarity (descriptions, spans)")):
            metrics, _ = label_similarity(data, mode, pool=pool)
            val, _ = label_similarity(data, mode, "val", pool=pool)
            results["runs"].setdefault(key, {})[split_name] = [{"test": metrics, "val": val, "seconds": 0.0}]
        results["splits"][split_name] = split.describe() | {
            "feature_stats": {name: store.stats for name, store in data.stores.items()}}
        for system in args.systems:
            train_images = sum(s.image is not None for s in split.train)
            if system == "MG-VMoE w/o InfoNCE" and train_images < 2:
                # InfoNCE needs >= 2 posts with images in a batch; with fewer in the whole training set it is
                # exactly 0 at every step, and the runs would repeat MG-VMoE (names) bit for bit.
                results.setdefault("skipped", []).append(
                    f"{system} on {split_name}: {train_images} training posts with an image, InfoNCE never "
                    "fires; identical to MG-VMoE (names)")
                continue
            for seed in seeds:
                config = system_config(system, split.task, seed)
                result = train(config, data, progress=False, dry_run=args.dry_run)
                if args.dry_run:
                    result.test = {"macro_p": 0.0, "macro_r": 0.0, "macro_f1": 0.0, "accuracy": 0.0, "n": 0}
                run = {"seed": seed, "test": result.test, "val": result.val, "best_epoch": result.best_epoch,
                       "history": result.history, "seconds": round(result.seconds, 1),
                       "inference_mode_check": result.inference_mode_check}
                results["runs"].setdefault(system, {}).setdefault(split_name, []).append(run)
                log.info("%-36s %-14s seed %d  val F1 %.1f  test F1 %.1f  (%.0fs)", system, split_name, seed,
                         result.val.get("macro_f1", 0), result.test.get("macro_f1", 0), result.seconds)
                if system == "MG-VMoE (names)" and seed == seeds[0] and result.test_scores is not None:
                    pred = [split.test_classes[i] for i in result.test_scores.argmax(1).tolist()]
                    confusions[split_name] = ([s.label for s in split.test], pred, split.test_classes)
        if not args.dry_run:  # partial results survive an interrupted run
            (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    results["seconds"] = time.perf_counter() - started
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.dry_run:
        print(f"dry run OK in {results['seconds']:.0f}s")
        return 0
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    write_markdown(results, out / "results.md")
    plot_curves(results, out / "curves.png")
    for split_name, (gold, pred, classes) in confusions.items():
        plot_confusion(gold, pred, classes, f"MG-VMoE (names), {split_name}, seed {seeds[0]}",
                       out / f"confusion_{split_name}.png")
    print((out / "results.md").read_text())
    return 0
