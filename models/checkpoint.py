"""MG-VMoE checkpoints: a directory with the heads' weights and a JSON card, verified by content hash.

    <dir>/heads.safetensors   trainable heads + the six marker embedding rows (encoders are not copied:
                              they come from installed packages, named in the config)
    <dir>/checkpoint.json     config, label sets, data protocol, metrics, thresholds, sha256 of the weights

``load_checkpoint`` refuses a directory whose weights do not match the recorded hash. It never touches
the network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.config import MGVMoEConfig
from models.modeling import MGVMoE

WEIGHTS, CARD = "heads.safetensors", "checkpoint.json"
FORMAT = "mg-vmoe-heads/1"

#: The checkpoints shipped in the package, the pipeline's defaults (``MMKG_ENTITY_CHECKPOINT`` /
#: ``MMKG_RELATION_CHECKPOINT`` override them).
SHIPPED = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_ENTITY_CHECKPOINT = SHIPPED / "met-tweets"
DEFAULT_RELATION_CHECKPOINT = SHIPPED / "mre-mnre"


class CheckpointError(RuntimeError):
    """The checkpoint directory is incomplete, altered or of an unknown format."""


@dataclass
class Checkpoint:
    config: MGVMoEConfig
    model: MGVMoE
    marker_embeddings: torch.Tensor  # (6, text_hidden) rows the features were computed with
    card: dict = field(default_factory=dict)  # labels, protocol, metrics, thresholds, hash

    @property
    def thresholds(self) -> dict:
        return self.card.get("thresholds", {})

    @property
    def fingerprint(self) -> str:
        return behaviour_sha256(self.card)

    @property
    def model_version(self) -> str:
        """Provenance written on every typed mention and triple: the name and the behaviour fingerprint, so a
        card recalibrated or re-configured over the same weights is a new version, not the old one's name."""
        return f"mg-vmoe/{self.card.get('name', 'unnamed')}@{self.fingerprint[:12]}"


def behaviour_sha256(card: dict) -> str:
    """What decides a checkpoint's outputs: its weights (by their hash), its config and its thresholds. The
    weights hash alone would give a card whose threshold or argument input changed the old version."""
    payload = {k: card.get(k) for k in ("weights_sha256", "config", "thresholds")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: MGVMoE, marker_embeddings: torch.Tensor, card: dict) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"heads.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.tuned is not None:  # the fine-tuned encoder layers in their storage precision (TunedLayers.STORAGE_DTYPE)
        tensors |= {f"heads.tuned.{k}": v.detach().contiguous().cpu().to(model.tuned.STORAGE_DTYPE)
                    for k, v in model.tuned.state_dict().items()}
    tensors["marker_embeddings"] = marker_embeddings.detach().contiguous().cpu().float()
    save_file(tensors, str(path / WEIGHTS), metadata={"format": FORMAT})
    full = dict(card)
    full.update(format=FORMAT, config=model.config.to_dict(), weights_sha256=sha256_file(path / WEIGHTS))
    (path / CARD).write_text(json.dumps(full, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_verified_card(path: Path, card_name: str = CARD, weights_name: str = WEIGHTS, fmt: str = FORMAT) -> dict:
    """The card of a checkpoint directory, after checking its format and that the weights file is the one
    the card hashed (an altered or partial copy is refused). Shared by every checkpoint kind."""
    if not (path / card_name).is_file() or not (path / weights_name).is_file():
        raise CheckpointError(f"{path}: expected {card_name} and {weights_name}")
    card = json.loads((path / card_name).read_text(encoding="utf-8"))
    if card.get("format") != fmt:
        raise CheckpointError(f"{path}: unknown checkpoint format {card.get('format')!r}")
    actual = sha256_file(path / weights_name)
    if actual != card.get("weights_sha256"):
        raise CheckpointError(f"{path}: weights hash {actual[:12]} does not match the card's "
                              f"{str(card.get('weights_sha256'))[:12]} (altered or partial copy)")
    return card


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    card = read_verified_card(path)
    config = MGVMoEConfig.from_dict(card["config"])
    tensors = load_file(str(path / WEIGHTS))
    model = MGVMoE(config)
    model.load_state_dict({k.removeprefix("heads."): v for k, v in tensors.items() if k.startswith("heads.")})
    model.eval()
    return Checkpoint(config, model, tensors["marker_embeddings"], card)
