"""Zero-shot typing and relation extraction by label-description similarity: no training at all.

A sentence encoder (all-MiniLM-L6-v2 by default, from ``models.encoders.default_text_encoder_path``;
offline) embeds

- each entity type and each relation type by its description, cached per ontology
  ``label_set_id``;
- each mention as ``"<surface> is a"``, the surface being the span with underscores as spaces
  and, for a hashtag or handle, CamelCase split into words (``#NBAAwards`` -> ``NBA Awards``);
- each candidate relation (``zero_shot.relation_candidates``): the post text with the head marked
  ``[ head ]`` and the tail ``{ tail }``, followed by `` | head → tail``.

A mention gets the entity type with the highest cosine similarity, or ``OTHER_TYPE`` when that
similarity is below ``entity_threshold``; a pair gets the allowed relation with the highest
similarity, or nothing when it is below ``relation_threshold``. Scores are raw cosine similarities
(no softmax: a score does not depend on which other labels are in the set). A type added to the
ontology is scored on the next call: only its description is embedded.

Input formats and thresholds were chosen on development data only, never test:

- types, on WNUT-16 dev mentions (gold spans, types mapped to the default ontology; plus the
  detector's spans that are not gold, which should be abstained on). Accuracy over the five types
  without abstention: mention alone 63.7, mention in its marked tweet ``... [ m ] ...`` 27.8,
  ``m — tweet`` 36.3, two words of context each side 37.6 (label text "name: description"): the
  tweet swamps the mention in a MiniLM sentence embedding, so context is left out. The surface
  form plus "is a" (this module): 69.0. Label text: description alone 69.0, "name: description"
  68.6, name alone 58.8 (with a split surface). Typed-mention F1 with abstention peaks at 0.15.
- relations, on MNRE validation pairs whose relation maps to the default ontology (492) and the
  ``None`` pairs (1000): choosing among the six relations, marked tweet + ``| head → tail``
  42.1 % correct vs marked tweet 39.0 vs plain tweet 38.6 (description as label text; "name:
  description" 2 points lower); the pair alone (``head → tail``) picks 45.1 % but cannot tell a
  relation from ``None`` at all (AUC 0.50). Even with context that separation is weak (AUC 0.57):
  the type constraints of the ontology do most of the work. Comparing the tweet with the
  description instantiated on the pair ("Messi is a member ... of Barcelona") was no better
  end to end (35.9 vs 36.9 F1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from extraction.zero_shot import best_reading_per_pair, narrowest, relation_candidates
from mmkg.ontology import Ontology
from mmkg.records import OTHER_TYPE, Mention, Post, RelationMention, TypedMention

METHOD = "label-sim"
METHOD_VERSION = 1
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"

#: Abstain (OTHER_TYPE) when the best type's cosine similarity is below this. WNUT-16 dev,
#: typed-mention F1 (detector false positives must abstain): 0.10 -> 33.8, 0.125 -> 35.9,
#: 0.15 -> 38.2, 0.175 -> 36.5, 0.20 -> 31.7.
DEFAULT_ENTITY_THRESHOLD = 0.15
#: Return no relation when the best allowed relation's cosine similarity is below this. MNRE
#: validation end to end (head and tail typed by this extractor, candidates by the ontology's
#: allowed pairs, 492 gold relations, 1000 None pairs), relation F1 (P/R): 0.00 -> 35.9
#: (27.7/51.0), 0.05 -> 36.3, 0.10 -> 36.9 (35.8/38.0), 0.125 -> 35.9, 0.15 -> 30.0.
DEFAULT_RELATION_THRESHOLD = 0.10

#: Characters of post text kept on each side of a relation pair (MiniLM reads 256 word pieces).
CONTEXT_CHARS = 240


def _words(name: str) -> str:
    """``SportsTeam`` -> ``Sports Team``; ``place_of_birth`` -> ``place of birth``."""
    name = name.replace("_", " ")
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return name.strip()


def surface(span: str, *, tag: bool = False) -> str:
    """A mention as words: underscores as spaces; for a hashtag or handle body (``tag``, or a span
    starting with ``#``/``@``) the sigil is dropped and CamelCase split (``NBAAwards`` ->
    ``NBA Awards``). Ordinary spans keep their casing (``iPhone``, ``McDonald``)."""
    if tag or span[:1] in ("#", "@"):
        return _words(span.lstrip("#@")) or span
    return span.replace("_", " ").strip() or span


def _is_tag(text: str, start: int) -> bool:
    """Whether the span at ``start`` is a hashtag or handle body (``#``/``@`` right before it)."""
    return start > 0 and text[start - 1] in ("#", "@")


def entity_label_text(name: str, description: str) -> str:
    """What an entity type is compared by: its description (measured above the name forms)."""
    return description


def relation_label_text(name: str, description: str) -> str:
    return description


def _window(text: str, start: int, end: int, chars: int = CONTEXT_CHARS) -> tuple[int, int]:
    """A window of ``text`` around [start, end), cut at whitespace where possible."""
    lo = max(0, start - chars)
    hi = min(len(text), end + chars)
    if lo > 0:
        space = text.find(" ", lo, start)
        lo = space + 1 if space != -1 else lo
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space != -1 else hi
    return lo, hi


def _post_text(posts: Mapping[str, Post], mention: Mention) -> str:
    post = posts.get(mention.post_id)
    if post is None:
        raise KeyError(f"mention {mention.text!r} refers to post {mention.post_id!r}, which is not in posts")
    return post.text


def mention_input(mention_text: str, *, tag: bool = False) -> str:
    """What a mention is compared by: ``"NBA Awards is a"`` (context measured worse, see above)."""
    return f"{surface(mention_text, tag=tag)} is a"


def relation_input(text: str, head: Mention, tail: Mention) -> str:
    """Post text with head ``[ ... ]`` and tail ``{ ... }`` marked, then ``| head → tail``."""
    a, b = min(head.start, tail.start), max(head.end, tail.end)
    lo, hi = _window(text, a, b)
    marks = sorted([(head.start, head.end, "[ ", " ]"), (tail.start, tail.end, "{ ", " }")])
    out, pos = [], lo
    for s, e, left, right in marks:
        out += [text[pos:s], left, text[s:e], right]
        pos = e
    out.append(text[pos:hi])
    return f"{''.join(out).strip()} | {head.text} → {tail.text}"


class LabelSimilarityExtractor:
    """``ZeroShotExtractor`` by cosine similarity between mentions (pairs in context) and label
    descriptions.

    ``model_path``: a folder loadable by ``transformers.AutoModel`` (default: the packaged
    all-MiniLM-L6-v2, or ``MMKG_TEXT_ENCODER``). ``entity_threshold`` / ``relation_threshold``:
    abstention thresholds on cosine similarity (defaults documented above). ``device``: "cuda"
    when available, else "cpu". ``batch_size``: texts per encoder call, across posts.

    ``model_version`` is ``label-sim/<model>/v1``; with non-default thresholds it ends in
    ``@e<entity>,r<relation>`` so records made under different settings stay distinguishable.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        entity_threshold: float = DEFAULT_ENTITY_THRESHOLD,
        relation_threshold: float = DEFAULT_RELATION_THRESHOLD,
        device: str | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        model_name: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from models.encoders import default_text_encoder_path

        path = model_path or default_text_encoder_path()
        if model_name is None:
            packaged = model_path is None and not os.environ.get("MMKG_TEXT_ENCODER")
            model_name = DEFAULT_MODEL_NAME if packaged else Path(path).name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.entity_threshold = float(entity_threshold)
        self.relation_threshold = float(relation_threshold)
        self.batch_size = batch_size
        self.max_length = max_length
        version = f"{METHOD}/{model_name}/v{METHOD_VERSION}"
        if (self.entity_threshold, self.relation_threshold) != (
            DEFAULT_ENTITY_THRESHOLD,
            DEFAULT_RELATION_THRESHOLD,
        ):
            version += f"@e{self.entity_threshold:g},r{self.relation_threshold:g}"
        self.model_version = version
        self._label_cache: dict[str, tuple[tuple[str, ...], object, tuple[str, ...], object]] = {}

    # ------------------------------------------------------------------ encoder

    def embed(self, texts: Sequence[str]):
        """L2-normalised mean-pooled embeddings, a (len(texts), dim) float tensor on the CPU."""
        import torch

        if not texts:
            return torch.zeros((0, self.model.config.hidden_size))
        # Longest first: batches of similar length pad less. Results go back to input order.
        order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
        out = torch.empty((len(texts), self.model.config.hidden_size))
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                out[idx] = pooled.cpu()
        return out

    def _labels(self, ontology: Ontology):
        """(entity names, entity embeddings, relation names, relation embeddings), cached."""
        key = ontology.label_set_id
        cached = self._label_cache.get(key)
        if cached is None:
            ent_names = tuple(e.name for e in ontology.entity_types)
            rel_names = tuple(r.name for r in ontology.relation_types)
            texts = [entity_label_text(e.name, e.description) for e in ontology.entity_types]
            texts += [relation_label_text(r.name, r.description) for r in ontology.relation_types]
            emb = self.embed(texts)
            cached = (ent_names, emb[: len(ent_names)], rel_names, emb[len(ent_names) :])
            if len(self._label_cache) >= 16:  # label sets change rarely; keep the cache bounded
                self._label_cache.pop(next(iter(self._label_cache)))
            self._label_cache[key] = cached
        return cached

    # ------------------------------------------------------------------ ZeroShotExtractor

    def type_mentions(
        self, posts: Mapping[str, Post], mentions: Sequence[Mention], ontology: Ontology
    ) -> list[TypedMention]:
        if not mentions:
            return []
        names, label_emb, _, _ = self._labels(ontology)
        texts = [_post_text(posts, m) for m in mentions]
        inputs = [mention_input(m.text, tag=_is_tag(t, m.start)) for m, t in zip(mentions, texts)]
        sims = self.embed(inputs) @ label_emb.T  # (mentions, types)
        best, arg = sims.max(dim=1)
        parents = ontology.parent_indices()
        out = []
        for m, row, score, i in zip(mentions, sims, best.tolist(), arg.tolist()):
            if score >= self.entity_threshold:
                i = narrowest(row, i, parents, self.entity_threshold)  # a fitting narrower type wins
                etype, score = names[i], float(row[i])
            else:
                etype = OTHER_TYPE
            out.append(TypedMention(m, etype, float(score), self.model_version, ontology.label_set_id))
        return out

    def extract_relations(
        self, posts: Mapping[str, Post], typed: Sequence[TypedMention], ontology: Ontology
    ) -> list[RelationMention]:
        candidates = relation_candidates(posts, typed, ontology)
        if not candidates:
            return []
        _, _, rel_names, rel_emb = self._labels(ontology)
        index = {name: i for i, name in enumerate(rel_names)}
        inputs = [relation_input(_post_text(posts, h.mention), h.mention, t.mention) for h, t, _ in candidates]
        sims = self.embed(inputs) @ rel_emb.T  # (pairs, relation types)
        kept = []
        for row, (head, tail, allowed) in zip(sims.tolist(), candidates):
            # Highest similarity; ties go to the relation listed first in the ontology.
            score, _, relation = max((row[index[r.name]], -index[r.name], r.name) for r in allowed)
            if score >= self.relation_threshold:
                kept.append((RelationMention(post_id=head.mention.post_id, head=head, tail=tail, relation=relation,
                                             score=float(score), model_version=self.model_version,
                                             label_set_id=ontology.label_set_id), float(score)))
        return best_reading_per_pair(kept)

