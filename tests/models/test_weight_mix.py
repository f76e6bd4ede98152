"""``MGVMoEConfig.weight_mix`` (WiSE-FT): the kept weights lie on the line from the untrained model, which with the
similarity prior is label similarity, to the trained one, and the threshold is calibrated on what is kept."""

from __future__ import annotations

import pytest
import torch

from models.config import MGVMoEConfig
from models.data import ClassSplit, Sample
from models.features import FeatureStore
from models.modeling import MGVMoE, seed_everything
from models.train import PreparedSplit, calibrate_thresholds, predict, train


def _typing_split() -> tuple[PreparedSplit, FeatureStore]:
    """Mentions whose span carries their type's direction, for four types, two of them unseen. The two seen labels
    are swapped, so label similarity is wrong on them and training has something to learn."""
    hidden, length = 32, 8
    g = torch.Generator().manual_seed(3)
    types = {f"t{k}": torch.randn(hidden, generator=g) for k in range(4)}
    samples, text = [], []
    for i in range(320):
        label = f"t{i % 4}"
        x = torch.randn(length, hidden, generator=g) * 0.5
        x[2:4] += types[label]
        samples.append(Sample(f"m{i}", ("w",) * length, ((2, 4),), label))
        text.append(x.half())
    store = FeatureStore([s.uid for s in samples], text, torch.tensor([[[2, 4]]] * len(samples)),
                         torch.full((len(samples),), -1), torch.zeros(0, 0, 1, dtype=torch.float16), {})
    by = lambda names: [s for s in samples if s.label in names]  # noqa: E731
    labels = dict(types, t0=types["t1"], t1=types["t0"])  # the seen labels swapped: label similarity is wrong
    seen = by({"t0", "t1"})
    split = ClassSplit("toy", "met", ["t0", "t1"], ["t0", "t1"], ["t2", "t3"], seen[:120], seen[120:],
                       by({"t2", "t3"}), "toy")
    emb = {(m, part): torch.stack([labels[c] for c in getattr(split, f"{part}_classes")])
           for m in ("name", "description") for part in ("train", "val", "test")}
    return PreparedSplit(split, emb, torch.zeros(6, hidden), cache=None, stores={"spans": store}), store


def _config(**changes) -> MGVMoEConfig:
    return MGVMoEConfig.tiny("met", text_input="spans", label_text="description", similarity_prior=10.0,
                             prior_pool="entities", epochs=3, patience=3, lr=3e-3, **changes)


def test_the_kept_weights_lie_between_label_similarity_and_the_trained_model():
    data, store = _typing_split()
    trained = {w: train(_config(weight_mix=w), data, progress=False) for w in (0.0, 0.5, 1.0)}
    assert trained[1.0].best_epoch > 0  # the training moved the weights, or the check below says nothing

    seed_everything(0)
    untrained = MGVMoE(_config())  # what train() starts from: the prior alone, label similarity
    samples, emb = data.split.test, data.class_emb[("description", "test")]
    assert torch.allclose(predict(trained[0.0].model, store, samples, emb), predict(untrained, store, samples, emb))
    assert not torch.allclose(predict(trained[1.0].model, store, samples, emb), predict(untrained, store, samples, emb))

    ends = trained[0.0].model.state_dict(), trained[1.0].model.state_dict()
    for name, p in trained[0.5].model.state_dict().items():
        if p.is_floating_point():
            assert torch.allclose(p, (ends[0][name] + ends[1][name]) / 2, atol=1e-6), name
    # The card's threshold is the kept model's, not the trained one's.
    assert trained[0.5].thresholds == calibrate_thresholds(trained[0.5].model, data, mix="pooled")
    assert trained[0.5].thresholds["min_score"] != trained[1.0].thresholds["min_score"]


def test_a_weight_mix_needs_the_similarity_prior_and_a_share_between_0_and_1():
    with pytest.raises(ValueError, match="similarity_prior"):
        MGVMoEConfig.tiny("met", weight_mix=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _config(weight_mix=1.5)


@pytest.mark.parametrize("task, name", [("met", "met-tweets"), ("mre", "mre-mnre")])
def test_the_committed_checkpoints_were_trained_with_the_shipping_preset(task, name):
    """The card's config is ``MGVMoEConfig.for_shipping`` (fields newer than the card at their defaults; the typer's
    ``use_image`` off, as training now saves a model no image trained), so a change to the preset, such as the typer's
    weight mix, cannot land without the checkpoint it describes."""
    import json
    from pathlib import Path

    card = json.loads((Path(__file__).resolve().parents[2] / "models/checkpoints" / name / "checkpoint.json").read_text())
    config = MGVMoEConfig.from_dict(card["config"] | {"extra": {}})
    # the typer's training sets have no image, so training saves it text-only (models.train.text_only_unless_images)
    assert config == MGVMoEConfig.for_shipping(task).replace(use_image=task == "mre")
    assert config.weight_mix == (0.5 if task == "met" else 1.0)
