"""Which MG-VMoE relation checkpoint an MNRE part of the benchmark may measure.

The zero-shot parts (``test``: the seed-0 split's unseen test relations; ``dev`` / ``dev-wide``: its validation
relations; ``val``: its test relations on the val file) must measure a checkpoint that took no gradient step on
the relations they score. The shipped ``models/checkpoints/mre-mnre`` is trained on the seed-0 split's train
relations (``mnre-pipeline``), so it qualifies; a checkpoint trained on more relations (``mnre-pipeline-wide``,
``mnre-all-relations``) is refused there, with the reason. The ``product`` part scores relations any checkpoint
may have trained on.
"""

from __future__ import annotations

import json
from pathlib import Path


def trained_relations(checkpoint: str | Path) -> list[str]:
    """The relations a relation checkpoint took gradient steps on (its card's ``labels.train``)."""
    card = json.loads((Path(checkpoint) / "checkpoint.json").read_text(encoding="utf-8"))
    return list(card.get("labels", {}).get("train", []))


def relation_checkpoint_for(scored_relations: list[str], requested: str = "", zero_shot: bool = True) -> str:
    """``requested`` (a checkpoint folder; "" = the shipped one), checked: for a zero-shot part (``zero_shot``) a
    checkpoint trained on any of ``scored_relations`` raises ``ValueError`` naming them."""
    from models.checkpoint import DEFAULT_RELATION_CHECKPOINT

    path = Path(requested) if requested else DEFAULT_RELATION_CHECKPOINT
    seen = sorted(set(trained_relations(path)) & set(scored_relations))
    if zero_shot and seen:
        raise ValueError(f"relation checkpoint {path} was trained on {seen}, which this zero-shot part scores: "
                         "measure a checkpoint of the seed-0 split (python -m models.train --split mnre-pipeline "
                         "--preset shipped --out DIR; --relation-checkpoint DIR), or score --mnre-part product")
    return requested


def relation_checkpoint_card(path: str) -> dict:
    """What an MNRE part measured, for its report: the relation checkpoint's folder ("" = the shipped one), split,
    trained relations and weights hash, from its card as ``models.checkpoint.read_verified_card`` checks it."""
    from models.checkpoint import DEFAULT_RELATION_CHECKPOINT, read_verified_card

    folder = Path(path) if path else DEFAULT_RELATION_CHECKPOINT
    card = read_verified_card(folder)
    root, resolved = Path(__file__).resolve().parents[2], folder.resolve()
    return {"path": str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(folder),
            "name": card.get("name"), "split": card.get("data", {}).get("name"),
            "trained_relations": card.get("labels", {}).get("train", []),
            "weights_sha256_12": card["weights_sha256"][:12]}
