"""MG-VMoE: multimodal graph-based variational mixture of experts, for zero-shot typing / relations.

Read top to bottom:
  1. ``TextTokenEncoder`` - frozen text encoder; gives token states + each entity's token span: the start
     marker in a marked text (reference), or the mention's word pieces in a post encoded once (pipeline).
  2. ``ImageRegionEncoder`` - frozen image backbone; gives a sequence of region tokens (7x7 = 49 for Lite0).
  3. ``VMoE`` - one shared variational mixture-of-experts layer, applied to text and to image tokens.
  4. ``QueryAttentionPool`` - fuses VMoE tokens with the entity representation h_e as the query.
  5. ``info_nce`` and ``MGVAT`` - cross-modal alignment and graph virtual adversarial training.
  6. ``MGVMoE`` - the trainable heads (everything above the frozen encoders) and the zero-shot scorer.

Encoders are frozen (the CPU budget, see docs/model.md), so training and benchmarks feed cached encoder
outputs straight into ``MGVMoE``; the pipeline runs the same encoders live. A post without an image gets a
learned "no image" token - never a fake image - and is left out of every image-side loss term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.config import MARKERS, MGVMoEConfig

# ------------------------------------------------------------------------------------------ 1. text side


def marked_text(text: str, spans: list[tuple[int, int]], task: str) -> str:
    """Insert entity markers around character spans: MET ``<e> m </e>``; MRE ``<h> head </h>``, ``<t> tail </t>``.

    Spans may touch or nest (MNRE has a few overlapping head/tail pairs); markers are inserted from the
    right so earlier offsets stay valid, closing markers before opening ones at the same offset.
    """
    pairs = [("<e>", "</e>")] if task == "met" else [("<h>", "</h>"), ("<t>", "</t>")]
    if len(spans) != len(pairs):
        raise ValueError(f"{task} needs {len(pairs)} span(s), got {len(spans)}")
    inserts = []  # (offset, priority, marker): at one offset close (0) before open (1)
    for (start, end), (open_m, close_m) in zip(spans, pairs):
        inserts += [(start, 1, open_m), (end, 0, close_m)]
    out = text
    for offset, _, marker in sorted(inserts, reverse=True):
        out = f"{out[:offset]} {marker} {out[offset:]}"
    return " ".join(out.split())


def words_to_text(tokens: tuple[str, ...], spans: tuple[tuple[int, int], ...]) -> tuple[str, list[tuple[int, int]]]:
    """Word-tokenised sample -> (text joined by spaces, character spans of the word spans)."""
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + 1
    ends = [s + len(t) for s, t in zip(starts, tokens)]
    return " ".join(tokens), [(starts[a], ends[b - 1]) for a, b in spans]


@dataclass
class TextFeatures:
    """Frozen text-encoder output for a batch of texts, with the token span of each entity.

    ``span_bounds[b, j] = (a, e)``: entity j of row b is tokens a..e-1. With entity markers in the text
    (``text_input="markers"``) it is the start marker's single token; with plain text encoded once
    (``text_input="spans"``) it is the word pieces of the mention. An entity beyond ``max_length`` gets
    (0, 1), the [CLS] token, and is counted in ``truncated_spans``.
    """

    tokens: torch.Tensor  # (B, L, text_hidden) last hidden states
    mask: torch.Tensor  # (B, L) bool, True at real tokens
    span_bounds: torch.Tensor  # (B, num_spans, 2) long, token range [a, e) of each entity
    truncated_spans: int = 0  # entities that fell outside max_length ([CLS] stands in for them)


def token_span(offsets: torch.Tensor, start: int, end: int) -> tuple[int, int] | None:
    """Token range [a, e) covering characters [start, end), from a fast tokenizer's offset mapping
    ``(L, 2)``; special and padding tokens (empty offsets) never count. None when no token overlaps
    (the span was truncated away)."""
    hit = ((offsets[:, 0] < end) & (offsets[:, 1] > start) & (offsets[:, 1] > offsets[:, 0])).nonzero().flatten()
    return (int(hit[0]), int(hit[-1]) + 1) if len(hit) else None


class TextTokenEncoder(nn.Module):
    """A transformers encoder + tokenizer with the six entity markers added as special tokens.

    New marker rows are initialised from a fixed-seed generator (not the vocabulary mean:
    ``mean_resizing=False``) and are exported with every checkpoint, so the cached features and the
    pipeline's live features come from the very same marker embeddings.
    """

    def __init__(self, model, tokenizer, max_length: int = 128, marker_seed: int = 0):
        super().__init__()
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        old_rows = model.get_input_embeddings().weight.shape[0]
        added = tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)})
        if added:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            emb = model.get_input_embeddings().weight
            gen = torch.Generator().manual_seed(marker_seed)
            ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
            scale = emb[:old_rows].std()  # the trained rows' scale; the new rows' own init is random
            with torch.no_grad():
                emb[ids] = torch.randn(len(ids), emb.shape[1], generator=gen) * scale
        self.marker_ids = dict(zip(MARKERS, tokenizer.convert_tokens_to_ids(list(MARKERS))))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_path(cls, path: str = "", max_length: int = 128) -> "TextTokenEncoder":
        from transformers import AutoModel, AutoTokenizer

        from models.encoders import default_text_encoder_path

        path = path or default_text_encoder_path()
        return cls(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), max_length)

    def marker_embeddings(self) -> torch.Tensor:
        ids = [self.marker_ids[m] for m in MARKERS]
        return self.model.get_input_embeddings().weight[ids].detach().clone()

    def set_marker_embeddings(self, rows: torch.Tensor) -> None:
        ids = [self.marker_ids[m] for m in MARKERS]
        with torch.no_grad():
            self.model.get_input_embeddings().weight[ids] = rows.to(self.model.get_input_embeddings().weight)

    def _run(self, texts: list[str], offsets: bool = False, depths: tuple[int, ...] = (0,)):
        """Token states of ``texts`` at each of ``depths`` (0 = the last layer's output, k = the input of the
        top k layers, what ``TunedLayers`` reads), the tokenizer's tensors and, when asked, character offsets."""
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
                             return_offsets_mapping=offsets)
        offset_mapping = enc.pop("offset_mapping", None)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        deep = any(depths)
        out = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=deep)
        states = {d: (out.hidden_states[-1 - d] if deep else out.last_hidden_state) for d in depths}
        return states, enc, offset_mapping

    def layers_from_top(self, k: int) -> list[nn.Module]:
        """The encoder's top ``k`` transformer layers (what ``TunedLayers`` copies)."""
        return list(self.model.encoder.layer[len(self.model.encoder.layer) - k:])

    @torch.no_grad()  # not inference_mode: label embeddings later enter autograd graphs as constants
    def forward(self, texts: list[str], task: str) -> TextFeatures:
        """Texts with entity markers (``marked_text``): each entity is its start marker's token."""
        states, enc, _ = self._run(texts)
        hidden = states[0]
        starts = ["<e>"] if task == "met" else ["<h>", "<t>"]
        bounds = torch.zeros(len(texts), len(starts), 2, dtype=torch.long, device=self.model.device)
        missing = 0
        for j, marker in enumerate(starts):
            hit = enc["input_ids"] == self.marker_ids[marker]
            found = hit.any(dim=1)
            pos = torch.where(found, hit.float().argmax(dim=1).long(), torch.zeros_like(bounds[:, j, 0]))
            bounds[:, j, 0], bounds[:, j, 1] = pos, pos + 1
            missing += int((~found).sum())
        return TextFeatures(hidden, enc["attention_mask"].bool(), bounds, missing)

    @torch.no_grad()
    def encode_plain(self, texts: list[str], depth: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Plain texts, each encoded once: token states (B, L, H) at ``depth`` (``_run``), mask (B, L) and the
        character offsets of every token (B, L, 2, on the CPU) for ``token_span``."""
        states, mask, offsets = self.encode_depths(texts, (depth,))
        return states[depth], mask, offsets

    @torch.no_grad()
    def encode_depths(self, texts: list[str], depths: tuple[int, ...]) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """``encode_plain`` at several depths from one pass: ({depth: (B, L, H)}, mask, offsets)."""
        states, enc, offsets = self._run(texts, offsets=True, depths=depths)
        return states, enc["attention_mask"].bool(), offsets

    @torch.no_grad()
    def encode_spans(self, texts: list[str], spans: list[list[tuple[int, int]]], depth: int = 0) -> TextFeatures:
        """Plain texts with the character spans of their entities (``text_input="spans"``)."""
        hidden, mask, offsets = self.encode_plain(texts, depth)
        bounds = torch.zeros(len(texts), len(spans[0]), 2, dtype=torch.long)
        missing = 0
        for b, row in enumerate(spans):
            for j, (start, end) in enumerate(row):
                found = token_span(offsets[b], start, end)
                missing += found is None
                bounds[b, j] = torch.tensor(found or (0, 1))
        return TextFeatures(hidden, mask, bounds.to(hidden.device), missing)

    @torch.no_grad()
    def embed_labels(self, label_texts: list[str]) -> torch.Tensor:
        """Mean-pooled token states of each label text (the reference encodes classes this way)."""
        enc = self.tokenizer(label_texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def encoder_layers(config: MGVMoEConfig) -> list[nn.Module]:
    """``config.tuned_layers`` fresh transformer layers shaped like the text encoder's (its transformers config;
    a tiny test config of another width gets layers of that width). ``TunedLayers.copy_from`` fills them."""
    from transformers import AutoConfig, AutoModel

    from models.encoders import default_text_encoder_path

    cfg = AutoConfig.from_pretrained(config.text_encoder or default_text_encoder_path())
    if cfg.hidden_size != config.text_hidden:
        cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads = config.text_hidden, 2 * config.text_hidden, 2
    cfg.num_hidden_layers, cfg.vocab_size = config.tuned_layers, 8
    return list(AutoModel.from_config(cfg).encoder.layer)


class TunedLayers(nn.Module):
    """The text encoder's top layers, fine-tuned with the MG-VMoE heads (``MGVMoEConfig.tuned_layers``).

    They read token states taken at their input (``TextTokenEncoder`` at ``depth = tuned_layers``; once per
    post in the pipeline, cached for training) with a learned embedding added to each entity's tokens, one per
    role (head, tail): the layers read the post for *this* pair, in this direction. The role embeddings start
    at zero, so before training the copy reproduces the frozen encoder's output exactly."""

    def __init__(self, config: MGVMoEConfig):
        super().__init__()
        self.layers = nn.ModuleList(encoder_layers(config))
        self.roles = nn.Parameter(torch.zeros(config.num_spans, config.text_hidden))

    #: How a checkpoint stores these layers: float16 halves a MiniLM layer (7.1 -> 3.6 MB) so the committed
    #: checkpoints stay small. ``round_to_storage`` applies the same rounding to a trained model before its
    #: validation scores and threshold are computed, so a checkpoint's card describes exactly what it loads.
    STORAGE_DTYPE = torch.float16

    @torch.no_grad()
    def round_to_storage(self) -> None:
        for p in self.parameters():
            p.copy_(p.to(self.STORAGE_DTYPE).to(p.dtype))

    def copy_from(self, encoder: "TextTokenEncoder") -> None:
        for mine, theirs in zip(self.layers, encoder.layers_from_top(len(self.layers)), strict=True):
            mine.load_state_dict(theirs.state_dict())

    def forward(self, h: torch.Tensor, mask: torch.Tensor, span_bounds: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(h.shape[1], device=h.device)[None]
        for j in range(span_bounds.shape[1]):
            inside = (positions >= span_bounds[:, j, :1]) & (positions < span_bounds[:, j, 1:])
            h = h + inside[..., None].to(h.dtype) * self.roles[j]
        bias = torch.zeros(mask.shape, dtype=h.dtype, device=h.device).masked_fill(~mask, torch.finfo(h.dtype).min)
        for layer in self.layers:
            out = layer(h, attention_mask=bias[:, None, None])
            h = out[0] if isinstance(out, tuple) else out
        return h


# ----------------------------------------------------------------------------------------- 2. image side


class ImageRegionEncoder(nn.Module):
    """A frozen CNN whose last feature map (C, h, w) becomes h*w region tokens of width C.

    Any backbone with ``extract_features(x) -> (B, C, h, w)`` fits (tests use a tiny CNN stand-in).
    Input normalisation is EfficientNet-Lite's ``(x/255 - 0.5) / 0.5``.
    """

    def __init__(self, backbone: nn.Module, image_size: int = 224):
        super().__init__()
        self.backbone, self.image_size = backbone, image_size
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_path(cls, path: str = "", image_size: int = 224) -> "ImageRegionEncoder":
        from efficientnet_lite_pytorch import EfficientNet

        from models.encoders import default_image_encoder_path

        weights = path or default_image_encoder_path()
        return cls(EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights), image_size)

    def preprocess(self, images) -> torch.Tensor:
        """PIL RGB images -> (B, 3, S, S) float tensor."""
        import numpy as np

        arrays = [np.asarray(im.convert("RGB").resize((self.image_size, self.image_size))) for im in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
        return (x / 255.0 - 0.5) / 0.5

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone.extract_features(pixels)  # (B, C, h, w)
        return fmap.flatten(2).transpose(1, 2)  # (B, h*w, C)


# --------------------------------------------------------------------------------------------- 3. VMoE


@dataclass
class VMoEOutput:
    z: torch.Tensor  # (B, N, vmoe_dim) mixture output: sample (training) or mean mu (inference)
    kl: torch.Tensor  # scalar: gate-weighted KL(N(mu_e, s_e^2) || N(0, I)), summed over dims, mean over tokens
    gate_entropy: torch.Tensor  # scalar: -sum_e pi_e log pi_e, mean over tokens
    gates: torch.Tensor  # (B, N, E)


class VMoE(nn.Module):
    """Shared variational mixture of experts: per token, gate pi = softmax(W_pi h); expert e gives
    mu_e = W_mu_e h and log s_e^2 = W_s_e h; z_e = mu_e + s_e * eps; o = sum_e pi_e z_e."""

    def __init__(self, hidden: int, dim: int, experts: int):
        super().__init__()
        self.experts, self.dim = experts, dim
        self.gate = nn.Linear(hidden, experts)
        self.mu = nn.Linear(hidden, experts * dim)  # all experts' mu heads in one matmul
        self.logvar = nn.Linear(hidden, experts * dim)
        nn.init.zeros_(self.logvar.weight)  # start near unit variance: a stable VIB start
        nn.init.zeros_(self.logvar.bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, sample: bool) -> VMoEOutput:
        b, n, _ = h.shape
        pi = self.gate(h).softmax(-1)  # (B, N, E)
        mu = self.mu(h).view(b, n, self.experts, self.dim)
        if not sample and not torch.is_grad_enabled():  # inference with mu: variance and KL are not needed
            zero = h.new_zeros(())
            return VMoEOutput((pi.unsqueeze(-1) * mu).sum(2), zero, zero, pi)
        logvar = self.logvar(h).view(b, n, self.experts, self.dim).clamp(-8.0, 8.0)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        out = (pi.unsqueeze(-1) * z).sum(2)
        kl_e = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)  # (B, N, E)
        kl_tok = (pi * kl_e).sum(-1)
        ent_tok = -(pi * (pi + 1e-9).log()).sum(-1)
        m = mask.to(h.dtype)
        denom = m.sum().clamp(min=1.0)
        return VMoEOutput(out, (kl_tok * m).sum() / denom, (ent_tok * m).sum() / denom, pi)


# ------------------------------------------------------------------------------------------- 4. fusion


class QueryAttentionPool(nn.Module):
    """Attention-pool tokens v_i with h_e as the query: score_i = w . tanh(W [h_e ; v_i]).

    The doc's literal ``w . [h_e ; v_i]`` adds the same w.h_e to every score, which the softmax cancels, so
    h_e would not act as a query at all; the tanh layer (additive attention) lets it.
    """

    def __init__(self, query_dim: int, token_dim: int, attn_dim: int = 128):
        super().__init__()
        self.q = nn.Linear(query_dim, attn_dim, bias=False)
        self.k = nn.Linear(token_dim, attn_dim)
        self.w = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor):
        scores = self.w(torch.tanh(self.q(query).unsqueeze(1) + self.k(tokens))).squeeze(-1)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        return (weights.unsqueeze(-1) * tokens).sum(1), weights


# ------------------------------------------------------------------------------- 5. alignment and VAT


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def span_mean(x: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Mean of x[b, a_b:e_b] per row; ``bounds`` (B, 2). A marker is the one-token span (p, p + 1)."""
    pos = torch.arange(x.shape[1], device=x.device)
    return masked_mean(x, (pos >= bounds[:, :1]) & (pos < bounds[:, 1:]))


def info_nce(text: torch.Tensor, image: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Symmetric InfoNCE of T . I^T with the diagonal as target (rows = samples that have an image)."""
    logits = text @ image.t() / temperature
    target = torch.arange(len(text), device=text.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def graph_distribution(nodes: torch.Tensor, graph: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per node, q = softmax([<n, G n>, <n, (1-G) n>] / temperature); neighbour sums are means over the
    batch so the logits do not grow with the batch size (with unit nodes they lie in [-1, 1])."""
    b = len(nodes)
    pos = (nodes * (graph @ nodes)).sum(-1) / b
    neg = (nodes * ((1.0 - graph) @ nodes)).sum(-1) / b
    return (torch.stack([pos, neg], -1) / temperature).log_softmax(-1)


class MGVAT(nn.Module):
    """Multimodal graph-based virtual adversarial training with one learnable perturbation r.

    Nodes are the batch's samples, n = concat(I, T) (I is zero for posts without an image, so only real
    images contribute image terms); G_ij = (cos(n_i, n_j) + 1) / 2 from the clean nodes.
    L_VAT = KL(q || q'), q from n (the target, no gradient), q' from n + r under the same G.
    """

    def __init__(self, dim: int, init_std: float, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.r = nn.Parameter(torch.randn(dim) * init_std)  # MGVMoE rescales it to radius vat_epsilon

    @staticmethod
    def graph(nodes: torch.Tensor) -> torch.Tensor:
        n = F.normalize(nodes, dim=-1)
        return ((n @ n.t() + 1.0) / 2.0).detach()

    def kl(self, nodes: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        # Nodes are L2-normalised first: the VMoE KL shrinks the latents, and on raw nodes both q and q'
        # sit at (0.5, 0.5) whatever r is - L_VAT was measured at ~1e-9, i.e. MG-VAT did nothing.
        nodes = F.normalize(nodes, dim=-1)
        graph = self.graph(nodes)
        log_q = graph_distribution(nodes, graph, self.temperature).detach()
        log_q_adv = graph_distribution(nodes + (self.r if r is None else r), graph, self.temperature)
        return F.kl_div(log_q_adv, log_q, log_target=True, reduction="batchmean")

    @torch.no_grad()
    def project(self, epsilon: float) -> None:
        """Put r back on the sphere ||r|| = epsilon (nodes have unit norm): step (a) learns r's direction.

        Measured: with r free and the ||r|| penalty, the KL is quadratic in r near 0 while the penalty's
        pull is constant, so r collapsed to ~0 and L_VAT stayed ~1e-8 (MG-VAT did nothing). A fixed
        radius is how VAT (Miyato et al.) bounds its perturbation."""
        self.r.mul_(epsilon / self.r.norm().clamp(min=1e-12))

    def adversary_loss(self, nodes: torch.Tensor, r_penalty: float) -> torch.Tensor:
        """Step (a): minimise this (= maximise KL - penalty * ||r||_2) with respect to r alone."""
        return -(self.kl(nodes.detach()) - r_penalty * self.r.norm())


# ------------------------------------------------------------------------------------- 6. the model


@dataclass
class MGVMoEBatch:
    """Model inputs (cached or live encoder outputs). Posts without an image have ``has_image`` False;
    their rows of ``image_tokens`` are ignored (zeros are fine)."""

    text_tokens: torch.Tensor  # (B, L, text_hidden)
    text_mask: torch.Tensor  # (B, L) bool
    span_bounds: torch.Tensor  # (B, num_spans, 2) token range [a, e) of each entity (TextFeatures)
    image_tokens: torch.Tensor  # (B, R, image_hidden); R may be 0 when no post in the batch has an image
    has_image: torch.Tensor  # (B,) bool
    labels: torch.Tensor | None = None  # (B,) index into the class list being scored; -1 = no class at all
    #                                      (an MNRE ``None`` pair, a pair read in the wrong direction)
    surfaces: torch.Tensor | None = None  # (B, num_spans, text_hidden) each entity's surface encoded alone
    #                                        (``TextTokenEncoder.embed_labels``), for ``argument_input``


def concat_batches(batches: list[MGVMoEBatch]) -> MGVMoEBatch:
    """One batch from several (text padded to the longest; an image-less part gets zero image rows)."""
    length = max(b.text_tokens.shape[1] for b in batches)
    regions = max(b.image_tokens.shape[1] for b in batches)
    ref = next(b for b in batches if b.image_tokens.shape[1] == regions).image_tokens

    def pad(x: torch.Tensor, size: int, dim: int = 1) -> torch.Tensor:
        shape = list(x.shape)
        shape[dim] = size - x.shape[dim]
        return torch.cat([x, x.new_zeros(shape)], dim) if shape[dim] else x

    images = [pad(b.image_tokens, regions) if b.image_tokens.shape[1] else
              ref.new_zeros(len(b.has_image), *ref.shape[1:]) for b in batches]
    labels = None if any(b.labels is None for b in batches) else torch.cat([b.labels for b in batches])
    surfaces = None if any(b.surfaces is None for b in batches) else torch.cat([b.surfaces for b in batches])
    return MGVMoEBatch(torch.cat([pad(b.text_tokens, length) for b in batches]),
                       torch.cat([pad(b.text_mask, length) for b in batches]),
                       torch.cat([b.span_bounds for b in batches]), torch.cat(images),
                       torch.cat([b.has_image for b in batches]), labels, surfaces)


@dataclass
class MGVMoEOutput:
    scores: torch.Tensor  # (B, C) zero-shot scores against the given class embeddings
    loss: torch.Tensor | None  # total L = L_rank + beta (L_VMoE + L_InfoNCE + L_VAT), when labels given
    losses: dict  # each term as a tensor: rank, vmoe_kl, vmoe_entropy, vmoe, infonce, vat
    nodes: torch.Tensor | None  # (B, 2 * vmoe_dim) MG-VAT nodes concat(I, T), for the adversary step
    attention: torch.Tensor | None  # (B, R' + L) fusion weights over image then text tokens


class MGVMoE(nn.Module):
    """The trainable heads of MG-VMoE over (frozen) text and image token features."""

    def __init__(self, config: MGVMoEConfig):
        super().__init__()
        c = self.config = config
        he_dim = (1 + c.num_spans) * c.text_hidden  # concat(h[CLS], h[start marker(s)])
        self.text_in = nn.Identity() if c.text_hidden == c.hidden else nn.Linear(c.text_hidden, c.hidden)
        self.image_in = nn.Linear(c.image_hidden, c.hidden)  # "project to the text width"
        self.no_image = nn.Parameter(torch.randn(1, 1, c.hidden) * 0.02)  # the learned "no image" token
        if c.use_vmoe:
            self.vmoe = VMoE(c.hidden, c.vmoe_dim, c.num_experts)
        else:
            self.plain = nn.Linear(c.hidden, c.vmoe_dim)  # ablation "w/o VMoE": plain projection
        if c.fusion == "attention":
            self.pool = QueryAttentionPool(he_dim, c.vmoe_dim)
            feat_dim = c.vmoe_dim + he_dim
        elif c.fusion == "concat":
            feat_dim = c.hidden + he_dim
        else:
            feat_dim = he_dim
        self.vat = MGVAT(2 * c.vmoe_dim, c.vat_init_std, c.vat_temperature)
        self.vat.project(c.vat_epsilon)
        self.dropout = nn.Dropout(c.dropout)
        self.proj_x = nn.Linear(feat_dim, c.proj_dim)
        self.proj_c = nn.Linear(c.text_hidden, c.proj_dim)
        self.tuned = TunedLayers(c) if c.tuned_layers else None
        # Where the "does it fit" logistic loss puts 0.5: a learned offset on the raw scores (training starts it
        # at the validation-calibrated threshold of the untrained model), so the loss does not drag every raw
        # score towards 0 and the priors' scale is kept.
        self.fit_offset = nn.Parameter(torch.zeros(())) if c.fit_weight > 0 else None
        if c.similarity_prior > 0:  # start exactly at label similarity; training learns a correction
            nn.init.zeros_(self.proj_x.weight)
            nn.init.zeros_(self.proj_x.bias)

    def head_parameters(self):
        """Everything but the perturbation r, which has its own maximisation step."""
        return [p for n, p in self.named_parameters() if not n.startswith("vat.")]

    @property
    def reads_images(self) -> bool:
        """Whether a post's image can change this model's scores: ``use_image`` on, and the learned scorer's input
        projection ``proj_x`` not all zero. The image reaches a score only through ``proj_x``: a model with the
        similarity prior starts it at zero, and where it stays there (heads trained at lr 0, as the shipped relation
        checkpoint's) the scores are the priors, read from the text alone, whatever the image."""
        return self.config.use_image and bool(self.proj_x.weight.any() or self.proj_x.bias.any())

    def parameter_groups(self) -> list[dict]:
        """``head_parameters`` for the optimiser: the tuned encoder layers (if any) at ``config.tuned_lr``."""
        tuned = {id(p) for p in self.tuned.parameters()} if self.tuned is not None else set()
        heads = [p for p in self.head_parameters() if id(p) not in tuned]
        return [{"params": heads}] + ([{"params": list(self.tuned.parameters()), "lr": self.config.tuned_lr}]
                                     if tuned else [])

    def image_sequence(self, batch: MGVMoEBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected image tokens, their mask, and which rows hold a real image. Image-less posts get
        the learned no-image token as their only image token."""
        b = batch.text_tokens.shape[0]
        has = batch.has_image if self.config.use_image else torch.zeros_like(batch.has_image)
        no_img = self.no_image.expand(b, 1, -1)
        if has.any() and batch.image_tokens.shape[1] > 0:
            proj = self.image_in(batch.image_tokens.float())
            proj = torch.where(has[:, None, None], proj, torch.zeros_like(proj))
            tokens = torch.cat([no_img, proj], 1)
            mask = torch.cat([~has[:, None], has[:, None].expand(-1, proj.shape[1])], 1)
        else:
            tokens, mask = no_img, torch.ones(b, 1, dtype=torch.bool, device=no_img.device)
        return tokens, mask, has

    def encode_tokens(self, h: torch.Tensor, mask: torch.Tensor, sample: bool):
        if self.config.use_vmoe:
            out = self.vmoe(h, mask, sample)
            return out.z, out.kl, out.gate_entropy
        zero = h.new_zeros(())
        return self.plain(h), zero, zero

    def forward(
        self, batch: MGVMoEBatch, class_emb: torch.Tensor, sample: bool | None = None, with_vat: bool = True
    ) -> MGVMoEOutput:
        """Scores of every sample against every class embedding; the loss too when labels are given.

        ``with_vat=False`` leaves L_VAT out of the loss (``training_step`` adds it after step (a)).
        """
        c = self.config
        if sample is None:
            sample = self.training or c.sample_at_inference
        text = batch.text_tokens.float()
        if self.tuned is not None:
            text = self.tuned(text, batch.text_mask, batch.span_bounds)
        sentence = text[:, 0] if c.sentence_pool == "cls" else masked_mean(text, batch.text_mask)
        entities = [span_mean(text, batch.span_bounds[:, j]) for j in range(batch.span_bounds.shape[1])]
        h_e = torch.cat([sentence, *entities], -1)  # concat(h[CLS] or mean, each entity's marker / span)
        img_tokens, img_mask, has = self.image_sequence(batch)
        zero = text.new_zeros(())
        losses = {"vmoe_kl": zero, "vmoe_entropy": zero, "infonce": zero, "vat": zero}
        nodes, attention = None, None

        if c.fusion == "attention":
            zt, kl_t, ent_t = self.encode_tokens(self.text_in(text), batch.text_mask, sample)
            # Image-side VMoE terms count real image tokens only (the no-image token is not an image).
            real_img_mask = img_mask & has[:, None]
            real_img_mask[:, 0] = False
            zi, kl_i, ent_i = self.encode_tokens(img_tokens, real_img_mask, sample)
            sides = 2.0 if real_img_mask.any() else 1.0
            losses["vmoe_kl"] = (kl_t + (kl_i if sides == 2.0 else 0.0)) / sides
            losses["vmoe_entropy"] = (ent_t + (ent_i if sides == 2.0 else 0.0)) / sides
            tokens = torch.cat([zi, zt], 1)
            h_mm, attention = self.pool(h_e, tokens, torch.cat([img_mask, batch.text_mask], 1))
            feat = torch.cat([h_mm, h_e], -1)
            t_mean = masked_mean(zt, batch.text_mask)
            i_mean = masked_mean(zi, real_img_mask) * has[:, None].to(zi.dtype)  # zero for image-less posts
            nodes = torch.cat([i_mean, t_mean], -1)
            if c.use_infonce and int(has.sum()) >= 2:
                losses["infonce"] = info_nce(t_mean[has], i_mean[has], c.infonce_temperature)
            if with_vat and c.use_vat and self.training and len(nodes) >= 2:
                losses["vat"] = self.vat.kl(nodes, self.vat.r.detach())
        elif c.fusion == "concat":
            feat = torch.cat([h_e, masked_mean(img_tokens, img_mask)], -1)
        else:
            feat = h_e

        arguments = None
        if class_emb.ndim == 3:  # relations: (label, head type, tail type), see relation_label_embeddings
            class_emb, arguments = class_emb[:, 0], class_emb[:, 1:]
        x = self.proj_x(self.dropout(feat))
        cls = self.proj_c(self.dropout(class_emb.float()))
        if c.score_scale > 0:
            scores = c.score_scale * F.normalize(x, dim=-1) @ F.normalize(cls, dim=-1).t()
        else:
            scores = x @ cls.t()
        if c.similarity_prior > 0:
            pooled = masked_mean(text, batch.text_mask) if c.prior_pool == "text" else torch.stack(entities).mean(0)
            sim = F.normalize(pooled, dim=-1) @ F.normalize(class_emb.float(), dim=-1).t()
            scores = scores + c.similarity_prior * sim
        if c.argument_prior > 0 and arguments is not None:
            # Argument-type compatibility, zero-shot from the label set: does the head span read like the
            # relation's head type and the tail span like its tail type. Order-sensitive: it tells direction.
            arg = F.normalize(arguments.float(), dim=-1)

            def fits(head: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
                head, tail = F.normalize(head.float(), dim=-1), F.normalize(tail.float(), dim=-1)
                return head @ arg[:, 0].t() + tail @ arg[:, 1].t()

            readings = []
            if c.argument_input in ("span", "both"):
                readings.append(fits(*entities[:2]))
            if c.argument_input in ("surface", "both"):
                if batch.surfaces is None:
                    raise ValueError(f"argument_input={c.argument_input!r} needs batch.surfaces (each entity's "
                                     "surface encoded alone)")
                readings.append(fits(batch.surfaces[:, 0], batch.surfaces[:, 1]))
            scores = scores + c.argument_prior * torch.stack(readings).mean(0)
        # free bits: no pressure on the KL below kl_free_bits nats per token (the logged vmoe_kl stays the raw KL)
        kl = losses["vmoe_kl"].clamp(min=c.kl_free_bits) if c.kl_free_bits > 0 else losses["vmoe_kl"]
        losses["vmoe"] = kl + losses["vmoe_entropy"]
        loss = None
        if batch.labels is not None:
            labelled = batch.labels >= 0
            gold = batch.labels.clamp(min=0)
            onehot = F.one_hot(gold, scores.shape[1]).bool() & labelled[:, None]
            hinge = F.relu(c.margin - scores.gather(1, gold[:, None]) + scores).masked_fill(onehot, 0.0)
            losses["rank"] = hinge[labelled].sum(1).mean() if labelled.any() else zero
            # Does the sample fit each description at all: a logistic loss on the raw score of every class,
            # 1 for the gold class, 0 for the others and for every class of a no-class sample. It is what
            # makes a raw-score threshold mean "related" for relations never trained on.
            losses["fit"] = (F.binary_cross_entropy_with_logits(scores - self.fit_offset, onehot.float(),
                                                                reduction="none").sum(1).mean()
                             if c.fit_weight > 0 else zero)
            loss = (losses["rank"] + c.fit_weight * losses["fit"]
                    + c.beta * (losses["vmoe"] + losses["infonce"] + c.vat_weight * losses["vat"]))
        return MGVMoEOutput(scores, loss, losses, nodes, attention)


def score_gap(scores: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(N,) how far each row's ``chosen`` class (N,) stands above the best of its other classes in ``scores``
    (N, C): the relation stage's ambiguity gap (``extraction.mg_vmoe.RelationRule``); +inf with one class."""
    if scores.shape[1] < 2:
        return torch.full((scores.shape[0],), float("inf"), dtype=scores.dtype)
    own = scores.gather(1, chosen[:, None]).squeeze(1)
    return own - scores.scatter(1, chosen[:, None], float("-inf")).max(1).values


def relation_label_embeddings(labels: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
    """(C, 3, H) class embeddings of relations: the relation's label text, the text of its head argument type
    and of its tail argument type (each (C, H)). ``MGVMoE`` reads row 0 as the class; with
    ``argument_prior > 0`` it also compares the head / tail spans with rows 1 / 2."""
    return torch.stack([labels, heads, tails], 1)


def adversary_step(model: MGVMoE, nodes: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
    """MG-VAT step (a): update r alone to maximise KL(q || q'(n + r)) - penalty * ||r||_2. Returns the
    objective before the step."""
    optimizer.zero_grad(set_to_none=True)
    loss = model.vat.adversary_loss(nodes, model.config.vat_r_penalty)
    loss.backward()
    optimizer.step()
    model.vat.project(model.config.vat_epsilon)
    return float(-loss.detach())


def training_step(
    model: MGVMoE,
    batch: MGVMoEBatch,
    class_emb: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    r_optimizer: torch.optim.Optimizer,
) -> dict[str, float]:
    """One batch: forward, MG-VAT step (a) on r alone, then step (b) on everything else with the total
    loss L = L_rank + beta (L_VMoE + L_InfoNCE + L_VAT) at the updated r. Returns each term as a float."""
    model.train()
    out = model(batch, class_emb, with_vat=False)
    loss, losses = out.loss, dict(out.losses)
    c = model.config
    if c.use_vat and out.nodes is not None and len(out.nodes) >= 2:
        adversary_step(model, out.nodes.detach(), r_optimizer)
        losses["vat"] = model.vat.kl(out.nodes, model.vat.r.detach())
        loss = loss + c.beta * c.vat_weight * losses["vat"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach())} | {k: float(v.detach()) for k, v in losses.items()}


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "MGVMoE", "MGVMoEBatch", "MGVMoEOutput", "MGVAT", "VMoE", "QueryAttentionPool", "TextTokenEncoder",
    "ImageRegionEncoder", "TextFeatures", "concat_batches", "marked_text", "relation_label_embeddings", "token_span", "span_mean", "words_to_text", "info_nce", "adversary_step", "training_step",
    "seed_everything", "count_parameters",
]
