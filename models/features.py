"""Frozen-encoder features, computed once per sample and cached on disk (outside the repository).

Encoders are frozen (docs/model.md), so a sample's text token states, entity token spans and image
region tokens never change: training, early stopping and every benchmark run read them from here and
only the small MG-VMoE heads run per step. The cache key covers everything that changes the features
(encoder paths, max length, marker embeddings, the samples themselves), so a stale cache cannot be read.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from mmkg.images import load_image_rgb
from models.data import MASK_WORD, NO_CLASS, Sample, samples_fingerprint
from models.label_descriptions import argument_texts, label_text
from models.modeling import (
    ImageRegionEncoder,
    MGVMoEBatch,
    TextTokenEncoder,
    marked_text,
    relation_label_embeddings,
    words_to_text,
)

log = logging.getLogger(__name__)


@dataclass
class FeatureStore:
    """Cached encoder outputs of a list of samples, indexable by sample uid."""

    uids: list[str]
    text: list[torch.Tensor]  # per sample (L_i, text_hidden), float16
    span_bounds: torch.Tensor  # (N, num_spans, 2) token range of each entity (modeling.TextFeatures)
    image_index: torch.Tensor  # (N,) row in ``images`` or -1 when the post has no image
    images: torch.Tensor  # (M, R, image_hidden) float16
    stats: dict  # truncated entity spans, images used/failed: nothing is lost silently
    surfaces: torch.Tensor | None = None  # (N, num_spans, text_hidden) float16: each entity's words encoded
    #                                        alone (``surface_embeddings``); cached in a file of its own

    def __post_init__(self) -> None:
        self.row = {u: i for i, u in enumerate(self.uids)}

    def batch(self, samples: list[Sample], classes: list[str] | None = None, swap: bool = False) -> MGVMoEBatch:
        """A model batch of ``samples``; a label outside ``classes`` (``None``) becomes -1, no class.
        ``swap=True`` reads every MRE pair tail-first (head and tail spans exchanged)."""
        idx = [self.row[s.uid] for s in samples]
        seqs = [self.text[i] for i in idx]
        length = max(len(s) for s in seqs)
        tokens = torch.zeros(len(idx), length, seqs[0].shape[1], dtype=torch.float16)
        mask = torch.zeros(len(idx), length, dtype=torch.bool)
        for j, s in enumerate(seqs):
            tokens[j, : len(s)] = s
            mask[j, : len(s)] = True
        img_idx = self.image_index[idx]
        has = img_idx >= 0
        if has.any():
            image_tokens = torch.zeros(len(idx), *self.images.shape[1:], dtype=torch.float16)
            image_tokens[has] = self.images[img_idx[has]]
        else:
            image_tokens = torch.zeros(len(idx), 0, self.images.shape[-1] if self.images.ndim == 3 else 1)
        labels = None
        if classes is not None:
            where = {c: k for k, c in enumerate(classes)}
            labels = torch.tensor([-1 if s.label in NO_CLASS else where[s.label] for s in samples])
        bounds = self.span_bounds[idx]
        surfaces = self.surfaces[idx] if self.surfaces is not None else None
        if swap:
            bounds = bounds.flip(1)
            surfaces = surfaces.flip(1) if surfaces is not None else None
        return MGVMoEBatch(tokens, mask, bounds, image_tokens, has, labels, surfaces)


def cache_dir() -> Path:
    from mmkg.settings import mmkg_home

    path = mmkg_home() / "cache" / "features"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_image(path: str):
    """Open an image as RGB with the pipeline's own loader (same decoding and limits everywhere)."""
    return load_image_rgb(path)


def encode_samples(
    samples: list[Sample],
    task: str,
    text_input: str,
    text_encoder: TextTokenEncoder,
    image_encoder: ImageRegionEncoder | None,
    batch_size: int = 64,
    progress: bool = True,
    depth: int = 0,
) -> FeatureStore:
    """Encoder outputs of ``samples``; ``depth`` > 0 (``text_input="spans"`` only) keeps the token states at the
    input of the encoder's top ``depth`` layers, which a checkpoint with ``tuned_layers`` runs itself."""
    if depth and text_input != "spans":
        raise ValueError("features below the top layers are read from plain text: depth needs text_input='spans'")
    mask = getattr(text_encoder.tokenizer, "mask_token", None) or MASK_WORD  # another encoder's own mask token
    plain = [words_to_text(tuple(mask if w == MASK_WORD else w for w in s.tokens), s.spans) for s in samples]
    texts = [marked_text(t, spans, task) for t, spans in plain] if text_input == "markers" else [t for t, _ in plain]
    order = sorted(range(len(samples)), key=lambda i: len(texts[i]))  # length-sorted: little padding
    text: list[torch.Tensor | None] = [None] * len(samples)
    span_bounds = torch.zeros(len(samples), 1 if task == "met" else 2, 2, dtype=torch.long)
    truncated = 0
    for k in tqdm(range(0, len(order), batch_size), desc=f"encode text ({task}, {text_input})", disable=not progress):
        ids = order[k : k + batch_size]
        if text_input == "markers":
            feats = text_encoder([texts[i] for i in ids], task)
        else:
            feats = text_encoder.encode_spans([texts[i] for i in ids], [plain[i][1] for i in ids], depth)
        truncated += feats.truncated_spans
        for j, i in enumerate(ids):
            n = int(feats.mask[j].sum())
            text[i] = feats.tokens[j, :n].to(torch.float16).clone()
            span_bounds[i] = feats.span_bounds[j]
    paths = sorted({s.image for s in samples if s.image})
    image_rows, images, failed = {}, [], 0
    if image_encoder is not None:
        for p in paths:
            try:
                pixels = image_encoder.preprocess([load_image(p)])
            except Exception as exc:  # a broken file is counted and the post stays text-only
                log.warning("image %s unusable: %s", p, exc)
                failed += 1
                continue
            image_rows[p] = len(images)
            images.append(image_encoder(pixels)[0].to(torch.float16))
    image_index = torch.tensor([image_rows.get(s.image, -1) if s.image else -1 for s in samples])
    stacked = torch.stack(images) if images else torch.zeros(0, 0, 1, dtype=torch.float16)
    stats = {"samples": len(samples), "text_input": text_input, "depth": depth, "truncated_spans": truncated, "images_used": len(images),
             "images_failed": failed, "samples_with_image": int((image_index >= 0).sum())}
    if truncated:
        log.warning("%d entities fell beyond max_length; [CLS] stands in for them", truncated)
    return FeatureStore([s.uid for s in samples], text, span_bounds, image_index, stacked, stats)


def embed_surfaces(surfaces: list[list[str]], text_encoder: TextTokenEncoder, known: dict[str, torch.Tensor],
                   batch_size: int = 256) -> tuple[torch.Tensor, int]:
    """(N, num_spans, H) each surface encoded alone (``embed_labels``): what the argument prior reads with
    ``argument_input`` "surface" or "both". Each distinct surface not in ``known`` is encoded once and added
    to it; returns the stacked rows and how many surfaces were encoded."""
    todo = sorted({t for row in surfaces for t in row} - known.keys())
    for k in range(0, len(todo), batch_size):
        part = todo[k : k + batch_size]
        with torch.no_grad():
            known.update(zip(part, text_encoder.embed_labels(part)))
    return torch.stack([torch.stack([known[t] for t in row]) for row in surfaces]), len(todo)


def surface_embeddings(samples: list[Sample], text_encoder: TextTokenEncoder) -> torch.Tensor:
    """(N, num_spans, H) float16: the words of each entity span of ``samples`` encoded alone."""
    emb, _ = embed_surfaces([[" ".join(s.tokens[a:b]) for a, b, *_ in s.spans] for s in samples], text_encoder, {})
    return emb.to(torch.float16).cpu()


#: Bumped whenever what a FeatureStore holds changes, so older caches are never read.
FEATURES_FORMAT = 2


def encoder_key(text_encoder: TextTokenEncoder, config_text_path: str, config_image_path: str) -> str:
    h = hashlib.sha256()
    h.update(f"{FEATURES_FORMAT}|{config_text_path}|{config_image_path}|{text_encoder.max_length}".encode())
    h.update(text_encoder.marker_embeddings().numpy().tobytes())
    return h.hexdigest()[:12]


class FeatureCache:
    """Loads encoders lazily and memoises FeatureStores and label embeddings on disk."""

    def __init__(self, text_path: str = "", image_path: str = "", max_length: int = 128, use_disk: bool = True):
        self.text_path, self.image_path, self.max_length, self.use_disk = text_path, image_path, max_length, use_disk
        self._text: TextTokenEncoder | None = None
        self._image: ImageRegionEncoder | None = None

    @property
    def text_encoder(self) -> TextTokenEncoder:
        if self._text is None:
            self._text = TextTokenEncoder.from_path(self.text_path, self.max_length)
        return self._text

    @property
    def image_encoder(self) -> ImageRegionEncoder:
        if self._image is None:
            self._image = ImageRegionEncoder.from_path(self.image_path)
        return self._image

    def key(self) -> str:
        return encoder_key(self.text_encoder, self.text_path, self.image_path)

    def features(self, samples: list[Sample], task: str, name: str, text_input: str = "markers",
                 depth: int = 0) -> FeatureStore:
        """``depth`` > 0: token states at the input of the top ``depth`` layers (``encode_samples``)."""
        at = f"-depth{depth}" if depth else ""
        path = cache_dir() / f"{name}-{task}-{text_input}{at}-{self.key()}-{samples_fingerprint(samples)}.pt"
        store = None
        if self.use_disk and path.is_file():
            store = FeatureStore(**torch.load(path, weights_only=True))
        if store is None:
            store = self._encode(samples, task, text_input, path, depth)
        if task == "mre":
            store.surfaces = self.surfaces(samples, name)
        return store

    def surfaces(self, samples: list[Sample], name: str) -> torch.Tensor:
        path = cache_dir() / f"{name}-surfaces-{self.key()}-{samples_fingerprint(samples)}.pt"
        if self.use_disk and path.is_file():
            return torch.load(path, weights_only=True)
        emb = surface_embeddings(samples, self.text_encoder)
        if self.use_disk:
            torch.save(emb, path)
        return emb

    def _encode(self, samples: list[Sample], task: str, text_input: str, path: Path, depth: int = 0) -> FeatureStore:
        needs_images = any(s.image for s in samples)
        store = encode_samples(samples, task, text_input, self.text_encoder,
                               self.image_encoder if needs_images else None, depth=depth)
        if self.use_disk:
            torch.save({k: getattr(store, k) for k in ("uids", "text", "span_bounds", "image_index", "images", "stats")},
                       path)
        return store

    def label_embeddings(self, labels: list[str], mode: str, task: str = "met") -> torch.Tensor:
        """(C, H) label embeddings; for relations (C, 3, H): the label, its head and its tail argument type
        (``modeling.relation_label_embeddings``)."""
        emb = self.text_encoder.embed_labels([label_text(lab, mode) for lab in labels])
        if task != "mre":
            return emb
        heads, tails = zip(*(argument_texts(lab) for lab in labels))
        return relation_label_embeddings(emb, self.text_encoder.embed_labels(list(heads)),
                                         self.text_encoder.embed_labels(list(tails)))
