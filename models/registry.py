"""Published MG-VMoE checkpoints: what ``mmkg_train`` writes and ``mmkg_ingest`` reads.

    <registry>/<name>/versions/<sha12>/{heads.safetensors, checkpoint.json}
    <registry>/<name>/CURRENT          one line: versions/<sha12>

A version is copied in full under a temporary name, verified (``load_checkpoint`` checks the
weights' hash), then renamed into place; only then is ``CURRENT`` replaced (``os.replace``). A
reader resolving a name therefore never sees a half-written checkpoint, and a training run that
dies before publishing changes nothing. The registry lives in ``$MMKG_HOME/checkpoints`` unless
``MMKG_CHECKPOINT_REGISTRY`` says otherwise.

References accepted by ``resolve``: a checkpoint directory (has ``checkpoint.json``), or the name
of a published checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mmkg.files import atomic_write_text
from models.checkpoint import CARD, CheckpointError, load_checkpoint


def registry_dir() -> Path:
    from mmkg.settings import mmkg_home

    return Path(os.environ.get("MMKG_CHECKPOINT_REGISTRY") or mmkg_home() / "checkpoints")


def publish(candidate: str | Path, name: str, registry: str | Path | None = None) -> Path:
    """Publish a checkpoint directory under ``name``; returns the published version directory."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid checkpoint name {name!r}")
    checkpoint = load_checkpoint(candidate)  # refuses partial or altered candidates
    root = Path(registry or registry_dir()) / name
    version = checkpoint.fingerprint[:12]  # weights, config and thresholds: a recalibrated card is a new version
    target = root / "versions" / version
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        for f in Path(candidate).iterdir():
            shutil.copy2(f, tmp / f.name)
        load_checkpoint(tmp)
        os.replace(tmp, target)
    atomic_write_text(root / "CURRENT", f"versions/{version}\n")
    return target


def resolve(ref: str | Path, registry: str | Path | None = None) -> Path:
    """The checkpoint directory a reference names (see the module docstring)."""
    path = Path(ref)
    if (path / CARD).is_file():
        return path
    pointer = Path(registry or registry_dir()) / str(ref) / "CURRENT"
    if pointer.is_file():
        return pointer.parent / pointer.read_text().strip()
    raise CheckpointError(f"{ref!r} is neither a checkpoint directory nor a published checkpoint in {pointer.parent.parent}")


def train_candidate(
    split_name: str, name: str, run_id: str, data_dir: str | None = None, epochs: int | None = None, seed: int = 0
) -> dict:
    """Train on the split's seen classes into ``<registry>/<name>/candidates/<run>``; returns its path and
    validation metrics. Uses CUDA when present (see ``models.train``)."""
    from models.checkpoint import save_checkpoint
    from models.config import MGVMoEConfig
    from models.data import load_split
    from models.features import FeatureCache
    from models.train import checkpoint_card, prepare, train

    split = load_split(split_name, Path(data_dir) if data_dir else None)
    config = MGVMoEConfig.for_shipping(split.task, seed=seed)  # as the shipped checkpoints are trained
    if epochs:
        config = config.replace(epochs=epochs)
    config.extra = {"split": split.name}
    data = prepare(split, FeatureCache(config.text_encoder, config.image_encoder, config.max_length))
    result = train(config, data, progress=False)
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    out = registry_dir() / name / "candidates" / safe_run
    if out.exists():
        shutil.rmtree(out)  # a retried task starts its candidate afresh
    save_checkpoint(out, result.model, data.marker_embeddings, checkpoint_card(name, result, data))
    return {"path": str(out), "val": result.val, "best_epoch": result.best_epoch}


def evaluate_candidate(path: str, split_name: str, data_dir: str | None = None) -> dict:
    """Zero-shot metrics of a saved checkpoint on the split's unseen test classes (loaded offline)."""
    from models.data import load_split
    from models.train import evaluate_checkpoint, prepare_for_checkpoint

    ckpt = load_checkpoint(path)
    split = load_split(split_name, Path(data_dir) if data_dir else None)
    if not split.test:
        return {"classes": [], "note": f"split {split_name!r} holds out no test classes: nothing to score zero-shot"}
    metrics = evaluate_checkpoint(ckpt, prepare_for_checkpoint(split, ckpt), "test")
    return {"classes": split.test_classes, **metrics}
