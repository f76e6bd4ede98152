"""MG-VMoE behind the pipeline's ``ZeroShotExtractor`` interface.

Labels are the ontology's own entity / relation *descriptions*, embedded at run time (cached per
``ontology.label_set_id``), so a type added to the ontology is scored on the next call with no
retraining. Each post's image is loaded (``extraction.images.load_image_rgb``) and encoded once for
all of its mentions and pairs; each marked mention / pair is one text-encoder sequence (the entity
markers sit inside the text, so the text cannot be shared across mentions). Work is batched across
posts and runs under ``torch.inference_mode``.

Abstention: a mention whose best type has a softmax probability under the checkpoint's calibrated
``min_confidence`` (chosen on validation classes, never test) becomes ``records.OTHER_TYPE``; a pair
under the relation checkpoint's threshold yields no relation. An image that cannot be opened is
counted in ``stats`` and the post is scored text-only - never with a fake image.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from extraction.ontology import Ontology
from extraction.records import OTHER_TYPE, Mention, Post, RelationMention, TypedMention
from extraction.zero_shot import relation_candidates
from models.checkpoint import Checkpoint, load_checkpoint
from models.modeling import ImageRegionEncoder, MGVMoEBatch, TextTokenEncoder, marked_text

log = logging.getLogger(__name__)

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_ENTITY_CHECKPOINT = CHECKPOINTS / "met-wnut16"
DEFAULT_RELATION_CHECKPOINT = CHECKPOINTS / "mre-mnre"
#: Characters of post text kept around the marked span(s): far more than a tweet, well inside 128 pieces.
CONTEXT_CHARS = 300


def _words(name: str) -> str:
    import re

    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).strip()


def window(text: str, spans: list[tuple[int, int]], chars: int = CONTEXT_CHARS) -> tuple[str, list[tuple[int, int]]]:
    """The text around the spans (at most ``chars`` on each side) and the spans shifted into it."""
    lo = max(0, min(s for s, _ in spans) - chars)
    hi = min(len(text), max(e for _, e in spans) + chars)
    return text[lo:hi], [(s - lo, e - lo) for s, e in spans]


class MGVMoEExtractor:
    """Zero-shot entity typing and relation extraction with two MG-VMoE checkpoints (MET and MRE)."""

    def __init__(
        self,
        entity_checkpoint: str | Path | Checkpoint = DEFAULT_ENTITY_CHECKPOINT,
        relation_checkpoint: str | Path | Checkpoint = DEFAULT_RELATION_CHECKPOINT,
        *,
        text_encoder: TextTokenEncoder | None = None,
        image_encoder: ImageRegionEncoder | None = None,
        batch_size: int = 32,
        device: str | torch.device | None = None,
    ) -> None:
        self.met = entity_checkpoint if isinstance(entity_checkpoint, Checkpoint) else load_checkpoint(entity_checkpoint)
        self.mre = (relation_checkpoint if isinstance(relation_checkpoint, Checkpoint)
                    else load_checkpoint(relation_checkpoint))
        if (self.met.config.task, self.mre.config.task) != ("met", "mre"):
            raise ValueError("entity checkpoint must be task 'met' and relation checkpoint task 'mre'")
        if not torch.equal(self.met.marker_embeddings, self.mre.marker_embeddings):
            raise ValueError("the two checkpoints were trained with different marker embeddings")
        self.text_encoder = text_encoder or TextTokenEncoder.from_path(self.met.config.text_encoder,
                                                                       self.met.config.max_length)
        self.text_encoder.set_marker_embeddings(self.met.marker_embeddings)
        self._image_encoder = image_encoder
        self.batch_size = batch_size
        # CUDA when present, else CPU; on CUDA the forward passes run under bf16 autocast.
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.text_encoder.to(self.device)
        self.met.model.to(self.device)
        self.mre.model.to(self.device)
        self.model_version = f"{self.met.model_version}+{self.mre.model_version.split('/', 1)[1]}"
        self._labels: dict[tuple[str, str], torch.Tensor] = {}
        self._images: dict[str, torch.Tensor | None] = {}  # image sha256 (or path) -> region tokens
        self.stats: Counter = Counter()

    # ------------------------------------------------------------------------------------ encoders
    @property
    def image_encoder(self) -> ImageRegionEncoder:
        if self._image_encoder is None:
            self._image_encoder = ImageRegionEncoder.from_path(self.met.config.image_encoder, self.met.config.image_size)
            self._image_encoder.to(self.device)
        return self._image_encoder

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        import contextlib

        return contextlib.nullcontext()

    def _label_embeddings(self, ontology: Ontology, kind: str, ckpt: Checkpoint) -> torch.Tensor:
        key = (ontology.label_set_id, kind)
        if key not in self._labels:
            items = ontology.entity_types if kind == "entity" else ontology.relation_types
            texts = [it.description if ckpt.config.label_text == "description" else _words(it.name) for it in items]
            self._labels[key] = self.text_encoder.embed_labels(texts)
        return self._labels[key]

    def _image_tokens(self, post: Post) -> torch.Tensor | None:
        """Region tokens of the post's usable image, once per image; None when it has none or it fails."""
        image = post.image
        if image is None or not image.path:
            return None
        key = image.sha256 or image.path
        if key not in self._images:
            try:
                from extraction.images import load_image_rgb

                pixels = self.image_encoder.preprocess([load_image_rgb(image.path)]).to(self.device)
                with self._autocast():
                    self._images[key] = self.image_encoder(pixels)[0].float()
                self.stats["images_encoded"] += 1
            except Exception as exc:  # counted and logged: the post is scored text-only
                log.warning("post %s: image %s unusable (%s); scoring text only", post.id, image.path, exc)
                self.stats["images_failed"] += 1
                self._images[key] = None
        return self._images[key]

    def _scores(self, ckpt: Checkpoint, items: list[tuple[str, Post]], class_emb: torch.Tensor) -> torch.Tensor:
        """(N, C) probabilities for marked texts, in input order; length-sorted batches across posts."""
        probs = torch.zeros(len(items), len(class_emb))
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
        task = ckpt.config.task
        for k in range(0, len(order), self.batch_size):
            idx = order[k : k + self.batch_size]
            with self._autocast():
                feats = self.text_encoder([items[i][0] for i in idx], task)
            self.stats["truncated_markers"] += feats.truncated_markers
            imgs = [self._image_tokens(items[i][1]) if ckpt.config.use_image else None for i in idx]
            has = torch.tensor([im is not None for im in imgs])
            if has.any():
                ref = next(im for im in imgs if im is not None)
                image_tokens = torch.stack([im if im is not None else torch.zeros_like(ref) for im in imgs])
            else:
                image_tokens = torch.zeros(len(idx), 0, ckpt.config.image_hidden, device=self.device)
            batch = MGVMoEBatch(feats.tokens.float(), feats.mask, feats.marker_pos.to(self.device),
                                image_tokens, has.to(self.device))
            with self._autocast():
                scores = ckpt.model(batch, class_emb.to(self.device)).scores
            probs[idx] = scores.float().softmax(-1).cpu()
        return probs

    # ----------------------------------------------------------------------------------- interface
    @torch.inference_mode()
    def type_mentions(self, posts: Mapping[str, Post], mentions: Sequence[Mention], ontology: Ontology) -> list[TypedMention]:
        # Image tokens live from here to the extract_relations call of the same shard, then go: memory
        # stays flat however many shards one task process scores.
        self._images.clear()
        if not mentions:
            return []
        names = [e.name for e in ontology.entity_types]
        items = []
        for m in mentions:
            text, spans = window(posts[m.post_id].text, [(m.start, m.end)])
            items.append((marked_text(text, spans, "met"), posts[m.post_id]))
        probs = self._scores(self.met, items, self._label_embeddings(ontology, "entity", self.met))
        threshold = float(self.met.thresholds.get("min_confidence", 0.0))
        out = []
        for m, p in zip(mentions, probs):
            score, best = p.max(0)
            kind = names[int(best)] if float(score) >= threshold else OTHER_TYPE
            self.stats["abstained_types" if kind == OTHER_TYPE else "typed"] += 1
            out.append(TypedMention(m, kind, float(score), self.model_version, ontology.label_set_id))
        return out

    @torch.inference_mode()
    def extract_relations(
        self, posts: Mapping[str, Post], typed: Sequence[TypedMention], ontology: Ontology
    ) -> list[RelationMention]:
        candidates = relation_candidates(typed, ontology)
        if not candidates or not ontology.relation_types:
            return []
        names = [r.name for r in ontology.relation_types]
        items = []
        for head, tail, _ in candidates:
            post = posts[head.mention.post_id]
            text, spans = window(post.text, [(head.mention.start, head.mention.end), (tail.mention.start, tail.mention.end)])
            items.append((marked_text(text, spans, "mre"), post))
        # Softmax over every relation of the ontology, then the best *allowed* one: a pair with a single
        # allowed relation is not made confident by the restriction alone.
        probs = self._scores(self.mre, items, self._label_embeddings(ontology, "relation", self.mre))
        threshold = float(self.mre.thresholds.get("min_confidence", 0.0))
        out = []
        for (head, tail, allowed), p in zip(candidates, probs):
            allowed_idx = [names.index(r.name) for r in allowed]
            best = max(allowed_idx, key=lambda i: float(p[i]))
            if float(p[best]) < threshold:
                self.stats["abstained_pairs"] += 1
                continue
            out.append(RelationMention(head.mention.post_id, head, tail, names[best], float(p[best]),
                                       self.model_version, ontology.label_set_id))
        return out
