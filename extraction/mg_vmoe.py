"""MG-VMoE behind the pipeline's ``ZeroShotExtractor`` interface.

Labels are the ontology's own entity / relation *descriptions*, embedded at run time (cached per
``ontology.label_set_id``), so a type added to the ontology is scored on the next call with no
retraining.

**Encode once.** Each post's text is run through the text encoder once, unmarked, and its image
through the image encoder once (``mmkg.images.load_image_rgb``); every mention and every
candidate pair of the post reads its entity span(s) - the mean of the span's word pieces - from
those token states (checkpoints with ``text_input="spans"``, ``MGVMoEConfig.for_pipeline``). Both
are kept from ``type_mentions`` to the ``extract_relations`` call of the same shard, then dropped, so
memory stays flat however many shards a task process scores. Posts are batched across the shard
(length-sorted) and everything runs under ``torch.inference_mode``; on CUDA under bf16 autocast. A
span past the encoder's ``max_length`` is re-read from a window of text around it (counted in
``stats``), never guessed.

Abstention: a mention whose best type's raw score is under the checkpoint's calibrated ``min_score``
(chosen on validation classes, never test; a raw score does not depend on how many labels the
ontology has), or whose surface form's agreed type does not beat another type by the card's
``thresholds.decision.min_gap`` (``type_min_gap``), becomes ``records.OTHER_TYPE``; a pair yields its best allowed relation only under the
relation checkpoint's decision rule (``relation_rule``: the calibrated threshold, moved by a margin chosen end
to end on the development protocol, and a minimum raw gap to every other relation of the ontology). The ``score`` written is the softmax probability
over all of the ontology's types / relations. An image that cannot be opened is
counted in ``stats`` and the post is scored text-only - never with a fake image.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from extraction.zero_shot import agree_on_types, best_reading_per_pair, decided_type, relation_candidates
from mmkg.identity import entity_name, typing_keys
from mmkg.images import load_image_rgb
from mmkg.ontology import Ontology
from mmkg.records import Mention, Post, RelationMention, TypedMention
from models.checkpoint import DEFAULT_ENTITY_CHECKPOINT, DEFAULT_RELATION_CHECKPOINT, Checkpoint, load_checkpoint
from models.features import embed_surfaces
from models.modeling import (ImageRegionEncoder, MGVMoEBatch, TextTokenEncoder, relation_label_embeddings,
                             score_gap, token_span)

log = logging.getLogger(__name__)

#: Characters of post text kept around a span that lies past ``max_length`` word pieces of its post.
CONTEXT_CHARS = 300
#: Mentions / pairs per forward pass of the heads (they are small; the encoders are the cost).
HEAD_BATCH = 128

Item = tuple[Post, list[tuple[int, int]]]  # one mention (one span) or candidate pair (head, tail spans)


def _words(name: str) -> str:
    import re

    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).strip()


def window(text: str, spans: list[tuple[int, int]], chars: int = CONTEXT_CHARS) -> tuple[str, list[tuple[int, int]]]:
    """The text around the spans (at most ``chars`` on each side) and the spans shifted into it."""
    lo = max(0, min(s for s, _ in spans) - chars)
    hi = min(len(text), max(e for _, e in spans) + chars)
    return text[lo:hi], [(s - lo, e - lo) for s, e in spans]


@dataclass(frozen=True)
class RelationRule:
    """When the relation stage writes a pair's best allowed relation: its raw score is at least ``min_score``, and
    it beats every other relation of the ontology (allowed or not) by ``min_gap`` raw points, so a pair that
    reads as two relations at once is not written as either."""

    min_score: float = float("-inf")
    min_gap: float = float("-inf")


def decision_min_score(ckpt: Checkpoint) -> float:
    """A checkpoint's raw-score threshold: its calibrated ``min_score`` moved by ``thresholds.decision.margin``
    where the card has one (chosen end to end on development data); -inf without a threshold."""
    decision = ckpt.thresholds.get("decision") or {}
    return float(ckpt.thresholds.get("min_score", float("-inf"))) + float(decision.get("margin", 0.0))


def relation_rule(ckpt: Checkpoint) -> RelationRule:
    """The relation checkpoint's decision rule: its card's calibrated ``min_score`` (chosen on validation pairs with
    gold spans), moved by ``thresholds.decision.margin`` and with ``thresholds.decision.min_gap`` when the card has
    them (chosen end to end on the development protocol, ``bench.graph_quality.decision_rules``)."""
    return RelationRule(decision_min_score(ckpt),
                        float((ckpt.thresholds.get("decision") or {}).get("min_gap", float("-inf"))))


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
        for ckpt in (self.met, self.mre):
            if ckpt.config.text_input != "spans":
                raise ValueError(
                    f"checkpoint {ckpt.model_version} was trained with entity markers in the text "
                    f"(text_input={ckpt.config.text_input!r}); the pipeline encodes each post once and needs "
                    "text_input='spans' (train with MGVMoEConfig.for_pipeline / --preset pipeline)")
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
        # post id -> ({depth: token states}, offsets); depth k = the input of a checkpoint's k tuned top layers
        self._texts: dict[str, tuple[dict[int, torch.Tensor], torch.Tensor]] = {}
        self._depths = tuple(sorted({0, self.met.config.tuned_layers, self.mre.config.tuned_layers}))
        self._surfaces: dict[str, torch.Tensor] = {}  # entity surface -> its words encoded alone
        # A checkpoint whose scores an image cannot change (``MGVMoE.reads_images``) is given none: its images are
        # not encoded, and when neither checkpoint reads them the image encoder is never loaded.
        self._reads_images = {ckpt.config.task: ckpt.model.reads_images for ckpt in (self.met, self.mre)}
        self.stats: Counter = Counter()

    # ------------------------------------------------------------------------------------ encoders
    @property
    def reads_images(self) -> bool:
        """Whether either checkpoint's scores can depend on a post's image (``MGVMoE.reads_images``); when neither
        can, no image is encoded and the image encoder is never loaded."""
        return any(self._reads_images.values())

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
        """Label embeddings of the ontology's types, or of its relations with their argument types:
        (C, 3, H), the relation's text and the mean of its allowed head / tail types' descriptions
        (``models.modeling.relation_label_embeddings``). Cached per label set."""
        key = (ontology.label_set_id, kind)
        if key not in self._labels:
            items = ontology.entity_types if kind == "entity" else ontology.relation_types
            texts = [it.description if ckpt.config.label_text == "description" else _words(it.name) for it in items]
            emb = self.text_encoder.embed_labels(texts)
            if kind == "relation":
                types = dict(zip((e.name for e in ontology.entity_types), torch.nn.functional.normalize(
                    self.text_encoder.embed_labels([e.description for e in ontology.entity_types]), dim=-1)))

                def argument(r, side: int) -> torch.Tensor:
                    names = list(dict.fromkeys(pair[side] for pair in r.allowed))
                    return torch.stack([types[n] for n in names]).mean(0)

                emb = relation_label_embeddings(emb, torch.stack([argument(r, 0) for r in items]),
                                                torch.stack([argument(r, 1) for r in items]))
            self._labels[key] = emb
        return self._labels[key]

    def _image_tokens(self, post: Post) -> torch.Tensor | None:
        """Region tokens of the post's usable image, once per image; None when it has none or it fails."""
        image = post.image
        if image is None or not image.path:
            return None
        key = image.sha256 or image.path
        if key not in self._images:
            try:
                data = Path(image.path).read_bytes()
                if image.sha256 and hashlib.sha256(data).hexdigest() != image.sha256:
                    # Staging checked these bytes; a file swapped since then is not what was validated.
                    self.stats["images_changed_since_staging"] += 1
                    raise ValueError(f"sha256 is not the staged {image.sha256[:12]}...: the file changed after staging")
                pixels = self.image_encoder.preprocess([load_image_rgb(io.BytesIO(data))]).to(self.device)
                with self._autocast():
                    self._images[key] = self.image_encoder(pixels)[0].float()
                self.stats["images_encoded"] += 1
            except Exception as exc:  # counted and logged: the post is scored text-only
                log.warning("post %s: image %s unusable (%s); scoring text only", post.id, image.path, exc)
                self.stats["images_failed"] += 1
                self._images[key] = None
        return self._images[key]

    def _encode_posts(self, posts: list[Post]) -> None:
        """Token states and character offsets of each post not encoded yet in this shard: one encoder
        pass per post, batched across posts (length-sorted, so little padding). A checkpoint with tuned top
        layers reads the states at their input, taken from the same pass."""
        todo = sorted({p.id: p for p in posts if p.id not in self._texts}.values(), key=lambda p: len(p.text))
        for k in range(0, len(todo), self.batch_size):
            chunk = todo[k : k + self.batch_size]
            with self._autocast():
                states, mask, offsets = self.text_encoder.encode_depths([p.text for p in chunk], self._depths)
            for r, post in enumerate(chunk):
                n = int(mask[r].sum())
                self._texts[post.id] = ({d: h[r, :n].float() for d, h in states.items()}, offsets[r, :n])
            self.stats["posts_encoded"] += len(chunk)

    def _surface_embeddings(self, ckpt: Checkpoint, items: list[Item]) -> torch.Tensor | None:
        """(N, num_spans, H) each span's surface encoded alone, when the checkpoint's argument prior reads
        surfaces (``MGVMoEConfig.argument_input``); each distinct surface once per shard."""
        if ckpt.config.task != "mre" or ckpt.config.argument_prior <= 0 or ckpt.config.argument_input == "span":
            return None
        texts = [[" ".join(post.text[s:e].split()) for s, e in spans] for post, spans in items]
        with self._autocast():
            emb, encoded = embed_surfaces(texts, self.text_encoder, self._surfaces, HEAD_BATCH)
        self.stats["surfaces_encoded"] += encoded
        return emb.float()

    def _head_scores(self, ckpt: Checkpoint, states: list[torch.Tensor], bounds: torch.Tensor, posts: list[Post],
                     class_emb: torch.Tensor, surfaces: torch.Tensor | None = None) -> torch.Tensor:
        """Raw class scores of one batch of mentions / pairs, from their posts' token states."""
        length = max(len(t) for t in states)
        tokens = torch.zeros(len(states), length, states[0].shape[-1], device=self.device)
        mask = torch.zeros(len(states), length, dtype=torch.bool, device=self.device)
        for j, t in enumerate(states):
            tokens[j, : len(t)], mask[j, : len(t)] = t, True
        imgs = [self._image_tokens(p) if self._reads_images[ckpt.config.task] else None for p in posts]
        has = torch.tensor([im is not None for im in imgs], device=self.device)
        if has.any():
            ref = next(im for im in imgs if im is not None)
            image_tokens = torch.stack([im if im is not None else torch.zeros_like(ref) for im in imgs])
        else:
            image_tokens = torch.zeros(len(states), 0, ckpt.config.image_hidden, device=self.device)
        batch = MGVMoEBatch(tokens, mask, bounds.to(self.device), image_tokens, has,
                            surfaces=surfaces.to(self.device) if surfaces is not None else None)
        with self._autocast():
            scores = ckpt.model(batch, class_emb.to(self.device)).scores
        return scores.float().cpu()

    def _scores(self, ckpt: Checkpoint, items: list[Item], class_emb: torch.Tensor) -> torch.Tensor:
        """(N, C) raw scores of each mention / pair against each class, in input order."""
        self._encode_posts([post for post, _ in items])
        depth = ckpt.config.tuned_layers
        surfaces = self._surface_embeddings(ckpt, items)
        scores = torch.zeros(len(items), len(class_emb))
        rows, overflow = [], []  # (item index, token bounds) read from the post; items past max_length
        for i, (post, spans) in enumerate(items):
            found = [token_span(self._texts[post.id][1], s, e) for s, e in spans]
            if any(b is None for b in found):
                overflow.append(i)
            else:
                rows.append((i, found))
        rows.sort(key=lambda r: len(self._texts[items[r[0]][0].id][1]))  # similar lengths share a batch
        for k in range(0, len(rows), HEAD_BATCH):
            part = rows[k : k + HEAD_BATCH]
            posts = [items[i][0] for i, _ in part]
            idx = [i for i, _ in part]
            scores[idx] = self._head_scores(
                ckpt, [self._texts[p.id][0][depth] for p in posts], torch.tensor([b for _, b in part]), posts, class_emb,
                surfaces[idx] if surfaces is not None else None)
        chars = CONTEXT_CHARS
        while overflow:
            # Spans beyond max_length word pieces of a long post: encode a window of text around them,
            # narrowed until they fit; a span that does not fit even alone falls back to [CLS], counted.
            windows = [window(items[i][0].text, items[i][1], chars) for i in overflow]
            still = []
            for k in range(0, len(overflow), self.batch_size):
                part = range(k, min(k + self.batch_size, len(overflow)))
                with self._autocast():
                    hidden, mask, offsets = self.text_encoder.encode_plain([windows[j][0] for j in part], depth)
                read = []  # (row in this encoder batch, index into overflow, token bounds)
                for r, j in enumerate(part):
                    found = [token_span(offsets[r], s, e) for s, e in windows[j][1]]
                    if all(found) or chars == 0:
                        self.stats["truncated_spans"] += sum(f is None for f in found)
                        read.append((r, j, [f or (0, 1) for f in found]))
                    else:
                        still.append(overflow[j])
                if read:
                    idx = [overflow[j] for _, j, _ in read]
                    states = [hidden[r, : int(mask[r].sum())].float() for r, _, _ in read]
                    scores[idx] = self._head_scores(ckpt, states, torch.tensor([b for _, _, b in read]),
                                                  [items[i][0] for i in idx], class_emb,
                                                  surfaces[idx] if surfaces is not None else None)
                    self.stats["windowed_spans"] += len(read)
            overflow, chars = still, (chars // 2 if chars > 20 else 0)
        return scores

    # ----------------------------------------------------------------------------------- interface
    @property
    def min_type_score(self) -> float:
        """The entity checkpoint's raw-score threshold: a mention (or a surface form's agreed mean) under it
        abstains. Its calibrated ``min_score`` moved by ``thresholds.decision.margin`` where the card has one
        (chosen end to end on development sets, as the relation checkpoint's: ``decision_min_score``)."""
        return decision_min_score(self.met)

    @property
    def type_min_gap(self) -> float | None:
        """The entity checkpoint's ``thresholds.decision.min_gap`` (chosen end to end on development sets,
        ``bench.graph_quality.type_rules``): a surface form whose agreed type beats another type by fewer raw
        points abstains (``zero_shot.agree_on_types``); None when the card has none."""
        gap = (self.met.thresholds.get("decision") or {}).get("min_gap")
        return None if gap is None else float(gap)

    def forget_posts(self) -> None:
        """Drop the post token states and image tokens kept for ``extract_relations``."""
        self._images.clear()
        self._texts.clear()
        self._surfaces.clear()

    @torch.inference_mode()
    def type_scores(self, posts: Mapping[str, Post], mentions: Sequence[Mention], ontology: Ontology) -> torch.Tensor:
        """(mentions, entity types) raw scores, in the ontology's type order. Post token states and image
        tokens live from here to the ``extract_relations`` call of the same shard, then go: memory stays
        flat however many shards one task process scores."""
        self.forget_posts()
        if not mentions:
            return torch.zeros(0, len(ontology.entity_types))
        items = [(posts[m.post_id], [(m.start, m.end)]) for m in mentions]
        return self._scores(self.met, items, self._label_embeddings(ontology, "entity", self.met))

    def typed_from_scores(self, mentions: Sequence[Mention], scores: torch.Tensor, agreed: Sequence[int | None],
                          ontology: Ontology) -> list[TypedMention]:
        """The TypedMentions of a typing decision (``agreed``: a type index per mention, None to abstain);
        each written score is the softmax probability of its type over the ontology's types."""
        names = [e.name for e in ontology.entity_types]
        out = []
        for m, raw, kind in zip(mentions, scores, agreed):
            self.stats["abstained_types" if kind is None else "typed"] += 1
            if kind is not None and kind != int(raw.argmax()):
                # to a narrower kind of the mention's own best type, or to the type its surface form agreed on
                narrowed = names[int(raw.argmax())] in ontology.lineage(names[kind])
                self.stats["types_narrowed" if narrowed else "types_changed_to_agree"] += 1
            label, score = decided_type(raw, kind, names)
            out.append(TypedMention(m, label, score, self.model_version, ontology.label_set_id))
        return out

    def type_mentions_scored(self, posts: Mapping[str, Post], mentions: Sequence[Mention],
                             ontology: Ontology) -> tuple[list[TypedMention], torch.Tensor]:
        """``type_mentions`` and the raw scores it decided from (the run-wide agreement re-decides on them,
        ``extraction.pipeline.agree_run_types``)."""
        scores = self.type_scores(posts, mentions, ontology)
        if not mentions:
            return [], scores
        # One type per surface form across the shard's posts, from all its mentions' scores (homonyms apart); a
        # handle spelling a name of its post is decided with that name (``identity.typing_keys``).
        names = [entity_name(m, {m.post_id: posts[m.post_id].text}) for m in mentions]
        keys = typing_keys([m.post_id for m in mentions], names)
        agreed = agree_on_types(keys, scores, self.min_type_score, parents=ontology.parent_indices(),
                                min_gap=self.type_min_gap)
        return self.typed_from_scores(mentions, scores, agreed, ontology), scores

    def type_mentions(self, posts: Mapping[str, Post], mentions: Sequence[Mention], ontology: Ontology) -> list[TypedMention]:
        return self.type_mentions_scored(posts, mentions, ontology)[0]

    @torch.inference_mode()
    def relation_scores(self, posts: Mapping[str, Post], typed: Sequence[TypedMention], ontology: Ontology):
        """The candidate pairs (``relation_candidates``) and their raw scores, one row per pair over the
        ontology's relations (empty when there is no candidate or no relation)."""
        candidates = relation_candidates(posts, typed, ontology)
        if not candidates or not ontology.relation_types:
            return [], torch.zeros(0, len(ontology.relation_types))
        items = [(posts[h.mention.post_id], [(h.mention.start, h.mention.end), (t.mention.start, t.mention.end)])
                 for h, t, _ in candidates]
        return candidates, self._scores(self.mre, items, self._label_embeddings(ontology, "relation", self.mre))

    @torch.inference_mode()
    def extract_relations(
        self, posts: Mapping[str, Post], typed: Sequence[TypedMention], ontology: Ontology
    ) -> list[RelationMention]:
        candidates, scores = self.relation_scores(posts, typed, ontology)
        names = [r.name for r in ontology.relation_types]
        rule = relation_rule(self.mre)
        # The best *allowed* relation, kept by the checkpoint's decision rule (``relation_rule``) on raw scores;
        # its written score is the softmax over every relation of the ontology, so a pair with one allowed
        # relation is not made certain by the rule.
        chosen = torch.tensor([max((names.index(r.name) for r in allowed), key=lambda i: float(raw[i]))
                               for (_, _, allowed), raw in zip(candidates, scores)], dtype=torch.long)
        kept = []
        for (head, tail, _), raw, p, best, gap in zip(candidates, scores, scores.softmax(-1), chosen.tolist(),
                                                      score_gap(scores, chosen).tolist()):
            if float(raw[best]) < rule.min_score:
                self.stats["abstained_pairs"] += 1
                continue
            if gap < rule.min_gap:
                self.stats["abstained_pairs_ambiguous"] += 1
                continue
            kept.append((RelationMention(head.mention.post_id, head, tail, names[best], float(p[best]),
                                         self.model_version, ontology.label_set_id), float(raw[best])))
        out = best_reading_per_pair(kept)
        self.stats["pairs_other_reading_dropped"] += len(kept) - len(out)
        return out
