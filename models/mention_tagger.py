"""A type-agnostic mention tagger: BIO over the word pieces of the text encoder (MiniLM), trained on
Twitter-2017 + WNUT-16 train, early-stopped on their dev sets.

The model (``MentionTagger``):

- the text encoder (all-MiniLM-L6-v2 by default, ``models.encoders.default_text_encoder_path()``),
  frozen and cut to its first ``num_layers`` blocks (4 of 6: the same dev F1 as all six, and
  faster; ``bench/results/entity_detection.md``), with LoRA adapters (rank ``lora_rank``) on every
  linear layer of those blocks (query, key, value, attention output, intermediate, output); at
  inference the adapters are merged into the weights, so tagging costs one plain pass of the cut
  encoder per post;
- a *case* embedding added to the word-piece embeddings: MiniLM's vocabulary is lower-cased, and
  capitals are the strongest mention cue in tweets. Each piece gets one of ``CASES`` from the
  characters it covers in the original text (zero-initialised, so training starts at the encoder);
- a linear layer to three tags ``O B I`` (entity types are dropped).

Labels are given per word piece through the tokenizer's offset mapping (``piece_labels``): the
piece that starts a gold span is ``B``, every other piece inside it ``I``, pieces outside ``O``, and
pieces straddling a span boundary or inside an ignored region are not trained on. Decoding
(``decode_spans``) reads each *word* (the tokenizer's pre-tokenisation unit, ``word_ids``) from its
first piece, runs a BIO-constrained Viterbi over the words (``I`` only after ``B``/``I``), and
returns character spans ``[start, end)`` of the original text: from the first word's first
character to the last word's last one. A post longer than ``max_length`` pieces is read in
overlapping windows (``stride`` pieces of overlap); each word is taken from the window where it is
farthest from an edge.

Data (``load_corpus``): posts *as written*: the corpora's tokens joined by single spaces, a lone
``@`` / ``#`` token glued to the next one (``written_form``, the benchmark's "tweet form"). The
pipeline's convention is Twitter-2017's: a handle or hashtag mention is its name without the sigil.
WNUT-16 annotates ``#Nashville`` with the sigil (the span is moved past it) and never annotates
``@handles`` (its handle tokens are *ignored*: neither trained on nor scored, since the two corpora
disagree about them).

Checkpoints (``save_tagger`` / ``load_tagger``), in the style of ``models.checkpoint``:

    <dir>/tagger.safetensors   LoRA adapters, case embedding, tag head (the encoder is not copied)
    <dir>/checkpoint.json      config, data, dev metrics, history, encoder fingerprint, sha256

Train: ``python -m models.mention_tagger --out models/checkpoints/mention-tagger`` (``--dry-run``
stops after one batch and writes nothing). This module knows texts, tensors and spans only; the
adapter from posts to ``mmkg.records.Mention`` is ``extraction.detection``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.checkpoint import SHIPPED, CheckpointError, behaviour_sha256, read_verified_card, sha256_file
from models.data import read_conll

WEIGHTS, CARD = "tagger.safetensors", "checkpoint.json"
FORMAT = "mmkg-mention-tagger/1"
DEFAULT_MENTION_CHECKPOINT = SHIPPED / "mention-tagger"

TAGS = ("O", "B", "I")
O, B, I = 0, 1, 2
IGNORE = -100

#: Case classes of a word piece, from the characters it covers in the original text.
CASES = ("special", "no_letter", "lower", "title", "upper", "mixed")

#: The corpora: folder under the research data directory, and the file of each split.
CORPORA = {
    "twitter2017": {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"},
    "wnut16": {"train": "train", "dev": "dev", "test": "test"},
}
TRAIN_CORPORA = ("twitter2017", "wnut16")


@dataclass(frozen=True)
class TaggerConfig:
    encoder: str = "all-MiniLM-L6-v2"  # the encoder's name, for the card; the path is given at load
    num_layers: int = 4  # encoder blocks kept (the first N); 0 = all. 4 of MiniLM's 6: dev F1 as 6, 1.4x faster
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = ("query", "key", "value", "dense")  # linear layers of the blocks, by name
    case_features: bool = True
    dropout: float = 0.1  # before the tag head
    max_length: int = 128
    stride: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of the steps
    batch_size: int = 16
    epochs: int = 6
    patience: int = 2
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TaggerConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "lora_targets" in d:
            d["lora_targets"] = tuple(d["lora_targets"])
        return cls(**d)


# --------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class TaggedText:
    """One post: its text, gold mention spans, and regions neither trained on nor scored."""

    text: str
    spans: tuple[tuple[int, int], ...]
    ignore: tuple[tuple[int, int], ...] = ()


def written_offsets(tokens: Sequence[str], glue_sigils: bool = True) -> tuple[str, list[tuple[int, int]]]:
    """Tokens joined by single spaces, a lone ``@``/``#`` glued to the next token when ``glue_sigils`` (the
    post as written), and each token's character span in that text."""
    text, offsets = "", []
    for i, token in enumerate(tokens):
        glued = glue_sigils and i > 0 and tokens[i - 1] in ("@", "#")
        if i > 0 and not glued:
            text += " "
        offsets.append((len(text), len(text) + len(token)))
        text += token
    return text, offsets


def written_form(tokens: Sequence[str], tags: Sequence[str], glue_sigils: bool = True) -> TaggedText:
    """Tokens joined by single spaces (a lone ``@``/``#`` glued to the next token when ``glue_sigils``:
    the post as written) and the BIO tags' spans as character offsets, types ignored: a span opens at
    ``B-`` or at an ``I-`` after ``O``, and an ``I-`` of any type continues it."""
    text, offsets = written_offsets(tokens, glue_sigils)
    spans, start = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        if tag == "O" or tag.startswith("B-") or start is None:
            if start is not None:
                spans.append((offsets[start][0], offsets[i - 1][1]))
                start = None
            if tag != "O":
                start = i
    return TaggedText(text, tuple(spans))


def past_sigil(text: str, start: int, end: int) -> tuple[int, int]:
    """A WNUT-16 span moved past a leading ``#``/``@`` (the pipeline's mentions never include it)."""
    return (start + 1, end) if text[start] in "#@" and end > start + 1 else (start, end)


def wnut_convention(example: TaggedText, tokens: Sequence[str]) -> TaggedText:
    """WNUT-16 to the pipeline's convention: spans ``past_sigil``; handles ignored."""
    text = example.text
    spans = tuple(past_sigil(text, a, b) for a, b in example.spans)
    ignore, pos = [], 0
    for tok in tokens:
        at = text.index(tok, pos)
        pos = at + len(tok)
        if tok.startswith("@") and len(tok) > 1:
            ignore.append((at, pos))
    ignore = [(a, b) for a, b in ignore if not any(s < b and a < e for s, e in spans)]
    return TaggedText(text, spans, tuple(ignore))


def load_corpus(data_dir: Path, corpus: str, split: str, glue_sigils: bool = True) -> list[TaggedText]:
    """A split (``train``/``dev``/``test``) of ``twitter2017`` or ``wnut16`` as posts as written."""
    path = Path(data_dir) / corpus / CORPORA[corpus][split]
    out = []
    for tokens, tags in read_conll(path):
        if tags and tags[0].startswith("IMGID:"):  # Twitter-2017: the image id line opens a tweet
            tokens, tags = tokens[1:], tags[1:]
        if not tokens:
            continue
        example = written_form(tokens, tags, glue_sigils)
        if corpus == "wnut16":
            example = wnut_convention(example, tokens)
        out.append(example)
    return out


def span_prf(predicted: Sequence[Sequence[tuple[int, int]]], examples: Sequence[TaggedText]) -> dict:
    """Exact-span micro P/R/F1 (in %); spans overlapping an ignored region are not scored."""
    tp = fp = fn = 0
    for pred, ex in zip(predicted, examples):
        def scored(spans):
            return {(a, b) for a, b in spans if not any(a < e and s < b for s, e in ex.ignore)}

        p, g = scored(pred), scored(ex.spans)
        tp, fp, fn = tp + len(p & g), fp + len(p - g), fn + len(g - p)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": round(100 * prec, 1), "recall": round(100 * rec, 1), "f1": round(100 * f1, 1),
            "tp": tp, "fp": fp, "fn": fn}


# ---------------------------------------------------------------------------------- pieces and tags
def case_class(piece: str) -> int:
    letters = [c for c in piece if c.isalpha()]
    if not letters:
        return CASES.index("no_letter")
    if all(c.islower() for c in letters):
        return CASES.index("lower")
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return CASES.index("title")
    if all(c.isupper() for c in letters):
        return CASES.index("upper")
    return CASES.index("mixed")


@dataclass
class Encoded:
    """Tokenised windows of a batch of texts (a text longer than max_length has several)."""

    input_ids: torch.Tensor  # (W, L)
    attention_mask: torch.Tensor  # (W, L)
    case_ids: torch.Tensor  # (W, L)
    offsets: list[list[tuple[int, int]]]  # per window, per piece: character offsets in its text
    word_ids: list[list[int | None]]  # per window, per piece: word index in its text (None: special)
    text_index: list[int]  # per window: which text


def encode(tokenizer, texts: Sequence[str], max_length: int = 128, stride: int = 32) -> Encoded:
    texts = [t if isinstance(t, str) else "" for t in texts]
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, stride=stride, padding=True,
                    return_overflowing_tokens=True, return_offsets_mapping=True, return_tensors="pt")
    text_index = [int(i) for i in enc["overflow_to_sample_mapping"]]
    offsets = [[(int(a), int(b)) for a, b in row] for row in enc["offset_mapping"]]
    word_ids = [enc.word_ids(w) for w in range(len(text_index))]
    case = torch.zeros_like(enc["input_ids"])
    for w, (row, words) in enumerate(zip(offsets, word_ids)):
        text = texts[text_index[w]]
        for j, ((a, b), wid) in enumerate(zip(row, words)):
            if wid is not None and b > a:
                case[w, j] = case_class(text[a:b])
    return Encoded(enc["input_ids"], enc["attention_mask"], case, offsets, word_ids, text_index)


def piece_labels(offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None],
                 spans: Sequence[tuple[int, int]], ignore: Sequence[tuple[int, int]] = ()) -> list[int]:
    """BIO label of every piece of one window: B on the piece a span starts at, I on the others inside
    it, O outside; IGNORE for special tokens, pieces across a span boundary and ignored regions."""
    labels = []
    for (a, b), wid in zip(offsets, word_ids):
        if wid is None or b <= a or any(a < e and s < b for s, e in ignore):
            labels.append(IGNORE)
            continue
        inside = [(s, e) for s, e in spans if a < e and s < b]
        if not inside:
            labels.append(O)
        elif len(inside) == 1 and inside[0][0] <= a and b <= inside[0][1]:
            labels.append(B if a == inside[0][0] else I)
        else:
            labels.append(IGNORE)
    return labels


#: BIO constraint: I may only follow B or I (and never opens a text).
_ALLOWED = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])  # [prev, next]


def viterbi(emissions: torch.Tensor) -> list[int]:
    """Best BIO-consistent tag sequence for (N, 3) log-probabilities."""
    n = emissions.shape[0]
    if n == 0:
        return []
    neg = torch.tensor(float("-inf"))
    score = torch.where(torch.tensor([True, True, False]), emissions[0], neg)
    back = []
    for t in range(1, n):
        cand = score[:, None] + torch.where(_ALLOWED, torch.tensor(0.0), neg)  # (prev, next)
        best, arg = cand.max(dim=0)
        score = best + emissions[t]
        back.append(arg)
    tags = [int(score.argmax())]
    for arg in reversed(back):
        tags.append(int(arg[tags[-1]]))
    return tags[::-1]


def decode_spans(log_probs: Sequence[torch.Tensor], encoded: Encoded, n_texts: int) -> list[list[tuple[int, int]]]:
    """Character spans per text from per-window (L, 3) log-probabilities of ``encoded``'s windows."""
    # Per text, per word: character extent, and the first piece's emission from the most central window.
    words: list[dict[int, list]] = [{} for _ in range(n_texts)]
    for w, t in enumerate(encoded.text_index):
        row, wids = encoded.offsets[w], encoded.word_ids[w]
        content = [j for j, wid in enumerate(wids) if wid is not None]
        if not content:
            continue
        lo, hi = content[0], content[-1]
        for j in content:
            wid, (a, b) = wids[j], row[j]
            entry = words[t].setdefault(wid, [a, b, None, -1, a])  # start, end, emission, centrality, first piece
            entry[0], entry[1] = min(entry[0], a), max(entry[1], b)
            centrality = min(j - lo, hi - j)
            if a < entry[4] or (a == entry[4] and centrality > entry[3]):
                entry[2], entry[3], entry[4] = log_probs[w][j], centrality, a
    out = []
    for t in range(n_texts):
        order = sorted(words[t])
        if not order:
            out.append([])
            continue
        tags = viterbi(torch.stack([words[t][k][2] for k in order]))
        spans, current = [], None
        for k, tag in zip(order, tags):
            a, b = words[t][k][0], words[t][k][1]
            if tag == B or (tag == I and current is None):
                if current:
                    spans.append(tuple(current))
                current = [a, b]
            elif tag == I:
                current[1] = b
            else:
                if current:
                    spans.append(tuple(current))
                current = None
        if current:
            spans.append(tuple(current))
        out.append(spans)
    return out


# -------------------------------------------------------------------------------------------- model
class LoRALinear(nn.Module):
    """``base(x) + scale * B(A(dropout(x)))``, the base frozen; B starts at zero (Hu et al., 2021)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


def _blocks(encoder) -> nn.ModuleList:
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(encoder).__name__}: expected a BERT-style encoder (encoder.layer blocks)")
    return layers


def encoder_fingerprint(encoder) -> str:
    """sha256 of the frozen encoder's tensors (embeddings and kept blocks): the base the adapters fit."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        if name.startswith("pooler."):
            continue
        h.update(name.encode())
        h.update(tensor.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


class MentionTagger(nn.Module):
    """Encoder (frozen, LoRA-adapted, optionally truncated) + case embedding + linear BIO head."""

    def __init__(self, config: TaggerConfig, encoder, tokenizer):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        blocks = _blocks(encoder)
        if config.num_layers and config.num_layers < len(blocks):
            encoder.encoder.layer = blocks[: config.num_layers]
            encoder.config.num_hidden_layers = config.num_layers
        encoder.pooler = None  # token states only
        encoder.requires_grad_(False)
        self.base_fingerprint = encoder_fingerprint(encoder)
        for block in _blocks(encoder):
            for name, module in list(block.named_modules()):
                if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in config.lora_targets:
                    parent = block.get_submodule(name.rsplit(".", 1)[0]) if "." in name else block
                    setattr(parent, name.rsplit(".", 1)[-1],
                            LoRALinear(module, config.lora_rank, config.lora_alpha, config.lora_dropout))
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.case = nn.Embedding(len(CASES), hidden) if config.case_features else None
        if self.case is not None:
            nn.init.zeros_(self.case.weight)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(hidden, len(TAGS))
        self.merged = False

    @classmethod
    def from_encoder_path(cls, config: TaggerConfig, path: str = "") -> "MentionTagger":
        from transformers import AutoModel, AutoTokenizer

        from models.encoders import default_text_encoder_path

        path = path or default_text_encoder_path()
        return cls(config, AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, case_ids: torch.Tensor) -> torch.Tensor:
        embeds = self.encoder.get_input_embeddings()(input_ids)
        if self.case is not None:
            embeds = embeds + self.case(case_ids)
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(hidden))  # (B, L, 3)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: adapters, case embedding, head (never the encoder's own weights)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {n: t.detach().clone() for n, t in self.state_dict().items() if n in names}

    def merge_adapters(self) -> "MentionTagger":
        """Fold the adapters into the encoder's weights (inference only: one plain encoder pass)."""
        if not self.merged:
            for block in _blocks(self.encoder):
                for name, module in list(block.named_modules()):
                    if isinstance(module, LoRALinear):
                        parent = block.get_submodule(name.rsplit(".", 1)[0]) if "." in name else block
                        setattr(parent, name.rsplit(".", 1)[-1], module.merged())
            self.merged = True
        return self.requires_grad_(False).eval()

    @torch.inference_mode()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[list[tuple[int, int]]]:
        """Mention spans [start, end) of each text, in input order. Texts are batched by length;
        each is encoded once (a long one once per window)."""
        was_training = self.training
        self.eval()
        texts = [t if isinstance(t, str) else "" for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[tuple[int, int]]] = [[] for _ in texts]
        device = self.head.weight.device
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = encode(self.tokenizer, [texts[i] for i in idx], self.config.max_length, self.config.stride)
            logits = self(enc.input_ids.to(device), enc.attention_mask.to(device), enc.case_ids.to(device))
            log_probs = list(torch.log_softmax(logits.float(), dim=-1).cpu())
            for i, spans in zip(idx, decode_spans(log_probs, enc, len(idx))):
                out[i] = spans
        self.train(was_training)
        return out


# ----------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    tagger: MentionTagger
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    dev: dict = field(default_factory=dict)  # per dev set: P/R/F1 at the best epoch
    seconds: float = 0.0


def _training_rows(tagger: MentionTagger, examples: Sequence[TaggedText]) -> list[tuple[list[int], list[int], list[int]]]:
    """(input ids, case ids, labels) per window, unpadded."""
    cfg, rows = tagger.config, []
    for s in range(0, len(examples), 256):
        chunk = examples[s : s + 256]
        enc = encode(tagger.tokenizer, [e.text for e in chunk], cfg.max_length, cfg.stride)
        for w, t in enumerate(enc.text_index):
            n = int(enc.attention_mask[w].sum())
            labels = piece_labels(enc.offsets[w], enc.word_ids[w], chunk[t].spans, chunk[t].ignore)
            rows.append((enc.input_ids[w, :n].tolist(), enc.case_ids[w, :n].tolist(), labels[:n]))
    return rows


def _batches(rows, batch_size: int, rng: random.Random, pad_id: int) -> list[tuple[torch.Tensor, ...]]:
    """Length-bucketed batches in random order (shuffled, sorted within chunks of 50 batches)."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    chunk = batch_size * 50
    order = [i for c in range(0, len(order), chunk) for i in sorted(order[c : c + chunk], key=lambda i: len(rows[i][0]))]
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    out = []
    for g in groups:
        length = max(len(rows[i][0]) for i in g)
        ids = torch.full((len(g), length), pad_id, dtype=torch.long)
        case = torch.zeros((len(g), length), dtype=torch.long)
        labels = torch.full((len(g), length), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(g), length), dtype=torch.long)
        for r, i in enumerate(g):
            n = len(rows[i][0])
            ids[r, :n], case[r, :n], labels[r, :n] = torch.tensor(rows[i][0]), torch.tensor(rows[i][1]), torch.tensor(rows[i][2])
            mask[r, :n] = 1
        out.append((ids, mask, case, labels))
    return out


def evaluate(tagger: MentionTagger, dev_sets: dict[str, Sequence[TaggedText]]) -> dict[str, dict]:
    return {name: span_prf(tagger.predict([e.text for e in ex]), ex) for name, ex in dev_sets.items()}


def train(tagger: MentionTagger, train_set: Sequence[TaggedText], dev_sets: dict[str, Sequence[TaggedText]],
          progress: bool = True, dry_run: bool = False) -> TrainResult:
    """AdamW on the adapters, case embedding and head; linear warm-up and decay; after each epoch the
    mean span F1 over ``dev_sets`` decides early stopping, and the best epoch's weights are kept."""
    from tqdm import tqdm

    cfg = tagger.config
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    started = time.perf_counter()
    rows = _training_rows(tagger, train_set)
    pad_id = tagger.tokenizer.pad_token_id or 0
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = 1 if dry_run else steps_per_epoch * cfg.epochs
    params = [p for p in tagger.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, int(cfg.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    result = TrainResult(tagger)
    best_metric, best_state, bad = -1.0, tagger.trainable_state(), 0
    for epoch in range(1, cfg.epochs + 1):
        tagger.train()
        batches = _batches(rows, cfg.batch_size, rng, pad_id)
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        running, seen = 0.0, 0
        for ids, mask, case, labels in bar:
            logits = tagger(ids, mask, case)
            loss = loss_fn(logits.reshape(-1, len(TAGS)), labels.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            running, seen = running + loss.item(), seen + 1
            bar.set_postfix(loss=f"{running / seen:.4f}")
            if dry_run:
                break
        record = {"epoch": epoch, "train_loss": round(running / max(1, seen), 5),
                  "seconds": round(time.perf_counter() - started, 1)}
        if dry_run:  # the one step is kept (no dev set has chosen anything)
            result.history.append(record)
            result.seconds = round(time.perf_counter() - started, 1)
            return result
        scores = evaluate(tagger, dev_sets)
        metric = sum(s["f1"] for s in scores.values()) / max(1, len(scores))
        record.update({f"dev_{name}_f1": s["f1"] for name, s in scores.items()}, dev_mean_f1=round(metric, 2))
        result.history.append(record)
        if progress:
            print(f"epoch {epoch}: loss {record['train_loss']:.4f}  "
                  + "  ".join(f"{n} F1 {s['f1']:.1f}" for n, s in scores.items()) + f"  ({record['seconds']} s)",
                  flush=True)
        if metric > best_metric:
            best_metric, best_state, bad = metric, tagger.trainable_state(), 0
            result.best_epoch, result.dev = epoch, scores
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    tagger.load_state_dict(best_state, strict=False)
    tagger.eval()
    result.seconds = round(time.perf_counter() - started, 1)
    return result


# ------------------------------------------------------------------------------------- checkpoints
def save_tagger(path: str | Path, tagger: MentionTagger, card: dict) -> Path:
    """Writes the tagger's own weights (not the encoder) and the card; returns the directory."""
    if tagger.merged:
        raise ValueError("the adapters are merged into the encoder: save before merge_adapters()")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous().cpu() for k, v in tagger.trainable_state().items()}
    save_file(tensors, str(path / WEIGHTS), metadata={"format": FORMAT})
    full = dict(card)
    full.update(format=FORMAT, config=tagger.config.to_dict(), tags=list(TAGS), cases=list(CASES),
                encoder_fingerprint=tagger.base_fingerprint, weights_sha256=sha256_file(path / WEIGHTS))
    (path / CARD).write_text(json.dumps(full, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def tagger_checkpoint_exists(path: str | Path) -> bool:
    return (Path(path) / CARD).is_file() and (Path(path) / WEIGHTS).is_file()


def load_tagger(path: str | Path, encoder_path: str = "", *, encoder=None, tokenizer=None,
                merge: bool = True) -> tuple[MentionTagger, dict]:
    """The tagger of a checkpoint directory over the text encoder at ``encoder_path`` (default: the
    packaged one) or the given ``encoder``/``tokenizer``. Refuses altered weights and an encoder other
    than the one the adapters were trained on. ``merge``: fold the adapters in (inference)."""
    path = Path(path)
    card = read_verified_card(path, CARD, WEIGHTS, FORMAT)
    config = TaggerConfig.from_dict(card["config"])
    if encoder is None:
        tagger = MentionTagger.from_encoder_path(config, encoder_path)
    else:
        tagger = MentionTagger(config, encoder, tokenizer)
    if tagger.base_fingerprint != card.get("encoder_fingerprint"):
        raise CheckpointError(f"{path}: trained on another text encoder (fingerprint "
                              f"{str(card.get('encoder_fingerprint'))[:12]}, this one {tagger.base_fingerprint[:12]})")
    tensors = load_file(str(path / WEIGHTS))
    expected = set(tagger.trainable_state())
    if set(tensors) != expected:
        raise CheckpointError(f"{path}: weights do not fit the config ({sorted(set(tensors) ^ expected)[:4]} ...)")
    tagger.load_state_dict(tensors, strict=False)
    tagger.eval()
    return (tagger.merge_adapters() if merge else tagger), card


def model_version(card: dict) -> str:
    """Name and behaviour fingerprint (weights, config, thresholds), as ``models.checkpoint.Checkpoint``."""
    return f"mention-tagger/{card.get('name', 'unnamed')}@{behaviour_sha256(card)[:12]}"


# ---------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    from mmkg.settings import research_data_dir

    defaults = TaggerConfig()
    parser = argparse.ArgumentParser(description="Train the type-agnostic mention tagger (Twitter-2017 + WNUT-16).")
    parser.add_argument("--out", default=str(DEFAULT_MENTION_CHECKPOINT), help="checkpoint directory to write")
    parser.add_argument("--encoder", default="", help="text encoder folder (default: the packaged MiniLM)")
    parser.add_argument("--dry-run", action="store_true", help="one training batch, nothing written")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest on shared cores)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--layers", type=int, default=defaults.num_layers, help="encoder blocks kept (0: all)")
    parser.add_argument("--rank", type=int, default=defaults.lora_rank)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--no-case", action="store_true", help="no case embedding")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--name", default="mention-tagger")
    parser.add_argument("--repeat", nargs="+", default=[], metavar="CORPUS=N",
                        help="show a training corpus N times per epoch, e.g. wnut16=2 (default: each once)")
    args = parser.parse_args(argv)
    repeats = {c: 1 for c in TRAIN_CORPORA}
    for item in args.repeat:
        corpus, _, times = item.partition("=")
        if corpus not in repeats or not times.isdigit() or int(times) < 1:
            parser.error(f"--repeat takes CORPUS=N with CORPUS one of {sorted(repeats)} and N >= 1, got {item!r}")
        repeats[corpus] = int(times)
    torch.set_num_threads(args.threads)

    data = research_data_dir()
    if data is None or not all((data / c / f).is_file() for c, s in CORPORA.items() for f in (s["train"], s["dev"])):
        print("research data not found: set MMKG_DATA to the folder holding twitter2017/ and wnut16/", file=sys.stderr)
        return 2
    config = TaggerConfig(num_layers=args.layers, lora_rank=args.rank, lora_alpha=2.0 * args.rank, lr=args.lr,
                          batch_size=args.batch_size, epochs=args.epochs, patience=args.patience,
                          case_features=not args.no_case, seed=args.seed)
    train_parts = {c: load_corpus(data, c, "train") for c in TRAIN_CORPORA}
    dev_sets = {c: load_corpus(data, c, "dev") for c in TRAIN_CORPORA}
    train_set = [e for c, part in train_parts.items() for _ in range(repeats[c]) for e in part]
    tagger = MentionTagger.from_encoder_path(config, args.encoder)
    trainable = sum(p.numel() for p in tagger.parameters() if p.requires_grad)
    print(f"train: {', '.join(f'{c} {len(v)}' for c, v in train_parts.items())} posts; "
          f"dev: {', '.join(f'{c} {len(v)}' for c, v in dev_sets.items())}; trainable parameters {trainable:,}", flush=True)
    result = train(tagger, train_set, dev_sets, progress=True, dry_run=args.dry_run)
    if args.dry_run:
        print(f"dry run: one batch, loss {result.history[-1]['train_loss']:.4f}; nothing written")
        return 0
    card = {
        "name": args.name,
        "task": "mention detection (BIO, untyped)",
        "command": " ".join(["python -m models.mention_tagger", *(sys.argv[1:] if argv is None else argv)]),
        "threads": args.threads,
        "data": {
            "train": {c: {"file": f"{c}/{CORPORA[c]['train']}", "posts": len(v),
                          "spans": sum(len(e.spans) for e in v), "times_per_epoch": repeats[c]}
                      for c, v in train_parts.items()},
            "dev": {c: {"file": f"{c}/{CORPORA[c]['dev']}", "posts": len(v),
                        "spans": sum(len(e.spans) for e in v)} for c, v in dev_sets.items()},
            "protocol": ("posts as written (tokens joined by spaces, lone @/# glued to the next token); "
                         "exact character spans, types dropped; WNUT-16 spans moved past a leading #/@ and "
                         "its @handle tokens ignored (never annotated there); early stopping on the mean "
                         "span F1 of the two dev sets; test files never read"),
        },
        "metrics": {"best_epoch": result.best_epoch, "dev": result.dev},
        "history": result.history,
        "train_seconds": result.seconds,
        "trainable_parameters": trainable,
    }
    out = save_tagger(args.out, tagger, card)
    print(f"best epoch {result.best_epoch}: " + ", ".join(f"{n} F1 {s['f1']:.1f}" for n, s in result.dev.items())
          + f"; {result.seconds} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
