"""Proof that the image path carries information: the class is readable only from the image.

Every sample has the same text; its class is the colour of its (real, on-disk) image. Through the whole
feature path (tiny text encoder, tiny CNN region encoder, cache, heads), a trained tiny model is far
above chance with images, and exactly at chance when the same posts are fed without their images.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image

from models.config import MGVMoEConfig
from models.data import ClassSplit, Sample
from models.features import encode_samples
from models.train import PreparedSplit, evaluate, train

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _samples(tmp_path, n_per_class: int, tag: str) -> list[Sample]:
    rng = np.random.default_rng(0 if tag == "train" else 1)
    out = []
    for name, rgb in COLOURS.items():
        for i in range(n_per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
            path = tmp_path / f"{tag}-{name}-{i}.png"
            Image.fromarray(pixels).save(path)
            out.append(Sample(f"{tag}/{name}/{i}", ("photo", "of", "a", "car"), ((3, 4),), name, str(path)))
    return out


def test_class_only_in_the_image_is_learned_and_lost_without_it(tmp_path, tiny_text_encoder, tiny_image_encoder):
    classes = list(COLOURS)
    train_s, val_s, test_s = (_samples(tmp_path, n, tag) for n, tag in ((16, "train"), (6, "val"), (10, "test")))
    store = encode_samples(train_s + val_s + test_s, "met", "markers", tiny_text_encoder, tiny_image_encoder, progress=False)
    assert store.stats["samples_with_image"] == len(train_s + val_s + test_s)
    split = ClassSplit("colours", "met", classes, classes, classes, train_s, val_s, test_s, "synthetic")
    # Fixed random class vectors: the random tiny BERT maps all colour words to nearly the same embedding,
    # and the class side of the scorer is not what this test is about.
    emb = torch.randn(len(classes), 32, generator=torch.Generator().manual_seed(0))
    data = PreparedSplit(split, {(m, p): emb for m in ("name", "description") for p in ("train", "val", "test")},
                         tiny_text_encoder.marker_embeddings(), cache=None, stores={"markers": store})
    config = MGVMoEConfig.tiny("met", epochs=12, patience=12, lr=1e-2, batch_size=8, steps_per_epoch=6)
    result = train(config, data, progress=False)
    assert result.test["accuracy"] >= 90.0, result.history
    assert result.config.use_image and result.model.config.use_image

    masked = dataclasses.replace(store, image_index=torch.full_like(store.image_index, -1))
    blind, _ = evaluate(result.model, masked, test_s, classes, emb)
    assert abs(blind["accuracy"] - 100 / 3) < 1e-6  # identical inputs -> one constant guess -> chance


def test_images_carry_classes_never_seen_in_training(tmp_path, tiny_text_encoder, tiny_image_encoder):
    """Zero-shot through the image path, not true by construction: 14 colour classes whose label embeddings are a
    fixed linear map of their colour; the model trains on 8, selects on 3 and is tested on 3 others. Texts vary and
    say nothing about the class. To score the held-out classes the heads must have learned how image regions relate
    to the label space, not a lookup of seen classes; the exact text-only twin (- image, - VMoE) is at chance."""
    rng = np.random.default_rng(0)
    names = [f"colour{i}" for i in range(14)]
    colours = rng.uniform(40, 215, (len(names), 3))
    mixing = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    label_space = 3 * (mixing @ torch.tensor(colours.T / 255 - 0.5, dtype=torch.float32)).T
    parts = {"train": names[:8], "val": names[8:11], "test": names[11:]}
    words = ["photo", "of", "a", "car", "sky", "tree", "house", "city"]

    def samples(classes: list[str], n: int, tag: str) -> list[Sample]:
        out = []
        for c in classes:
            for i in range(n):
                pixels = np.clip(colours[names.index(c)] + rng.normal(0, 12, (40, 40, 3)), 0, 255).astype(np.uint8)
                path = tmp_path / f"{tag}-{c}-{i}.png"
                Image.fromarray(pixels).save(path)
                out.append(Sample(f"{tag}/{c}/{i}", tuple(str(w) for w in rng.choice(words, 5)), ((1, 2),), c, str(path)))
        return out

    train_s, val_s, test_s = samples(parts["train"], 12, "train"), samples(parts["val"], 8, "val"), samples(parts["test"], 10, "test")
    store = encode_samples(train_s + val_s + test_s, "met", "markers", tiny_text_encoder, tiny_image_encoder, progress=False)
    split = ClassSplit("colours-zero-shot", "met", parts["train"], parts["val"], parts["test"], train_s, val_s, test_s,
                       "synthetic: held-out colour classes")
    emb = {p: label_space[[names.index(c) for c in classes]] for p, classes in parts.items()}
    data = PreparedSplit(split, {(m, p): emb[p] for m in ("name", "description") for p in emb},
                         tiny_text_encoder.marker_embeddings(), cache=None, stores={"markers": store})
    accuracy = {}
    for system, changes in (("mg-vmoe", {}), ("twin", dict(use_image=False, use_vmoe=False))):
        runs = [train(MGVMoEConfig.tiny("met", epochs=15, patience=15, lr=1e-2, batch_size=8, steps_per_epoch=8,
                                        seed=seed, **changes), data, progress=False) for seed in (0, 1, 2)]
        accuracy[system] = [r.test["accuracy"] for r in runs]
    chance = 100 / 3
    assert np.mean(accuracy["mg-vmoe"]) >= chance + 20, accuracy  # measured: 66.7 / 100 / 60 (mean 75.6)
    assert all(abs(a - chance) < 1e-6 for a in accuracy["twin"]), accuracy  # no image: one constant guess


def test_a_model_trained_without_any_image_is_saved_text_only(tmp_path, tiny_text_encoder, tiny_image_encoder):
    """No training sample has an image (Twitter-2017 and WNUT-16, the typer's sets): the image path gets no gradient
    and stays at its random initialisation, so the model is trained and saved with ``use_image`` off, and the
    pipeline does not feed it the images of the posts it types. Validation samples with images change nothing."""
    from models.modeling import MGVMoE, seed_everything
    from models.train import text_only_unless_images

    classes = list(COLOURS)
    train_s = [dataclasses.replace(s, image=None) for s in _samples(tmp_path, 8, "train")]
    val_s = _samples(tmp_path, 3, "val")
    store = encode_samples(train_s + val_s, "met", "markers", tiny_text_encoder, tiny_image_encoder, progress=False)
    split = ClassSplit("no-images", "met", classes, classes, [], train_s, val_s, [], "synthetic")
    emb = torch.randn(len(classes), 32, generator=torch.Generator().manual_seed(0))
    data = PreparedSplit(split, {(m, p): emb for m in ("name", "description") for p in ("train", "val", "test")},
                         tiny_text_encoder.marker_embeddings(), cache=None, stores={"markers": store})
    config = MGVMoEConfig.tiny("met", epochs=2, patience=2, lr=1e-2, batch_size=8, steps_per_epoch=3)
    assert config.use_image
    result = train(config, data, progress=False)
    assert not result.config.use_image and not result.model.config.use_image
    seed_everything(config.seed)
    initialised = MGVMoE(config).image_in  # as train() initialises it
    assert torch.equal(result.model.image_in.weight, initialised.weight)  # never trained
    with_one = dataclasses.replace(split, train=train_s[:-1] + [_samples(tmp_path, 1, "img")[0]])
    assert text_only_unless_images(config, with_one).use_image
