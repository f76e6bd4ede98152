"""The mention tagger (models/mention_tagger.py) and its adapter in EntityDetector.

Non-slow tests use a tiny random-init BERT and a word-piece vocabulary built here (no weights, no
research data): BIO <-> character-span round trips (word pieces, glued hashtags and handles, windows of
long texts), the training dry run, the checkpoint round trip with its hash checks, and the detector's
fallback to spaCy + rules. ``slow`` tests load the packaged MiniLM and the committed checkpoint.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from models.checkpoint import CheckpointError, sha256_file
from models.mention_tagger import (
    CARD,
    CASES,
    DEFAULT_MENTION_CHECKPOINT,
    IGNORE,
    WEIGHTS,
    B,
    I,
    MentionTagger,
    O,
    TaggedText,
    TaggerConfig,
    case_class,
    decode_spans,
    encode,
    load_corpus,
    load_tagger,
    piece_labels,
    save_tagger,
    span_prf,
    train,
    viterbi,
    written_form,
)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "#", "@", ".", "!", ",", ":",
         "barack", "obama", "loves", "nash", "##ville", "and", "new", "##york", "in", "the", "band", "played",
         "paris", "last", "night", "with", "taylor", "swift", "at", "stadium", "mc", "##don", "##ald", "##s", "rt"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)


def tiny_encoder(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64))


def tiny_config(**changes) -> TaggerConfig:
    base = dict(encoder="tiny-bert", max_length=16, stride=4, lora_rank=4, lora_alpha=8.0, batch_size=4, epochs=2)
    base.update(changes)
    return TaggerConfig(**base)


def tiny_tagger(tokenizer, seed: int = 0, **changes) -> MentionTagger:
    return MentionTagger(tiny_config(**changes), tiny_encoder(seed), tokenizer)


def randomise(tagger: MentionTagger, seed: int = 1) -> None:
    """Non-zero adapters and head, so merging and loading have something to get right."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tagger.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def one_hot(labels: list[int]) -> torch.Tensor:
    out = torch.full((len(labels), 3), -20.0)
    for j, lab in enumerate(labels):
        out[j, O if lab == IGNORE else lab] = 0.0
    return out


def round_trip(tokenizer, examples: list[TaggedText], max_length=16, stride=4):
    """Gold spans -> piece labels -> (perfect) log-probabilities -> decoded spans."""
    enc = encode(tokenizer, [e.text for e in examples], max_length, stride)
    labels = [piece_labels(enc.offsets[w], enc.word_ids[w], examples[t].spans, examples[t].ignore)
              for w, t in enumerate(enc.text_index)]
    return enc, labels, decode_spans([one_hot(lab) for lab in labels], enc, len(examples))


# ------------------------------------------------------------------------------------------ the data
def test_written_form_glues_sigils_and_maps_spans_to_characters():
    tokens = ["RT", "@", "NewYork", ":", "Barack", "Obama", "loves", "#", "Nashville"]
    tags = ["O", "O", "B-ORG", "O", "B-PER", "I-PER", "O", "O", "B-LOC"]
    ex = written_form(tokens, tags)
    assert ex.text == "RT @NewYork : Barack Obama loves #Nashville"
    assert [ex.text[a:b] for a, b in ex.spans] == ["NewYork", "Barack Obama", "Nashville"]
    spaced = written_form(tokens, tags, glue_sigils=False)
    assert spaced.text == "RT @ NewYork : Barack Obama loves # Nashville"
    assert [spaced.text[a:b] for a, b in spaced.spans] == ["NewYork", "Barack Obama", "Nashville"]
    # types are dropped: an I- of another type continues the span; a stray I- opens one
    assert written_form(["a", "b", "c"], ["B-PER", "I-ORG", "O"]).spans == ((0, 3),)
    assert written_form(["a", "b"], ["O", "I-PER"]).spans == ((2, 3),)


def test_corpora_are_read_as_written_with_the_pipeline_conventions(tmp_path):
    (tmp_path / "twitter2017").mkdir()
    (tmp_path / "twitter2017" / "train.txt").write_text(
        "IMGID:1\n#\tO\nNBA\tB-ORG\n:\tO\nKawhi\tB-PER\nLeonard\tI-PER\n\nIMGID:2\n@\tO\nNBA\tB-ORG\n\n")
    (tmp_path / "wnut16").mkdir()
    (tmp_path / "wnut16" / "dev").write_text(
        "@SammieLynnsMom\tO\nat\tO\n#Nashville\tB-geo-loc\nwith\tO\nTaylor\tB-person\nSwift\tI-person\n\n")
    tw = load_corpus(tmp_path, "twitter2017", "train")
    assert [e.text for e in tw] == ["#NBA : Kawhi Leonard", "@NBA"]
    assert [tw[0].text[a:b] for a, b in tw[0].spans] == ["NBA", "Kawhi Leonard"]
    (wn,) = load_corpus(tmp_path, "wnut16", "dev")
    assert wn.text == "@SammieLynnsMom at #Nashville with Taylor Swift"
    assert [wn.text[a:b] for a, b in wn.spans] == ["Nashville", "Taylor Swift"]  # past the '#'
    assert [wn.text[a:b] for a, b in wn.ignore] == ["@SammieLynnsMom"]  # WNUT never annotates handles


def test_span_scores_leave_ignored_regions_out():
    ex = TaggedText("@bob at Paris", ((8, 13),), ((0, 4),))
    assert span_prf([[(1, 4), (8, 13)]], [ex])["f1"] == 100.0
    m = span_prf([[(1, 4), (8, 13)]], [TaggedText(ex.text, ex.spans)])
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)


def test_case_classes():
    assert [CASES[case_class(s)] for s in ("nash", "Nash", "NBA", "McDonald", "2017", "I")] == [
        "lower", "title", "upper", "mixed", "no_letter", "title"]


# --------------------------------------------------------------------------------- pieces <-> spans
def test_piece_labels_follow_the_offsets_and_decode_back_exactly(tokenizer):
    text = "Barack Obama loves #Nashville and @NewYork ."
    spans = ((0, 12), (20, 29), (35, 42))
    assert [text[a:b] for a, b in spans] == ["Barack Obama", "Nashville", "NewYork"]
    enc, (labels,), decoded = round_trip(tokenizer, [TaggedText(text, spans)])
    pieces = tokenizer.convert_ids_to_tokens(enc.input_ids[0])
    tagged = {p: lab for p, lab in zip(pieces, labels)}
    assert pieces[:9] == ["[CLS]", "barack", "obama", "loves", "#", "nash", "##ville", "and", "@"]
    assert (tagged["barack"], tagged["obama"], tagged["#"], tagged["nash"], tagged["##ville"]) == (B, I, O, B, I)
    assert (tagged["@"], tagged["new"], tagged["##york"], tagged["[CLS]"]) == (O, B, I, IGNORE)
    assert decoded == [list(spans)]
    # the case of each piece comes from the original characters
    assert CASES[int(enc.case_ids[0][pieces.index("nash")])] == "title"
    assert CASES[int(enc.case_ids[0][pieces.index("##ville")])] == "lower"


def test_a_span_ending_inside_a_piece_is_not_trained_on(tokenizer):
    labels = piece_labels([(0, 0), (0, 6), (7, 12), (0, 0)], [None, 0, 1, None], [(0, 3)])
    assert labels == [IGNORE, IGNORE, O, IGNORE]
    assert piece_labels([(0, 4)], [0], [(0, 4)], ignore=[(0, 4)]) == [IGNORE]


def test_words_are_read_from_their_first_piece(tokenizer):
    """A B on a continuation piece cannot start a span inside a word: the first piece decides."""
    text = "McDonalds in Paris"
    enc = encode(tokenizer, [text], 16, 4)
    pieces = tokenizer.convert_ids_to_tokens(enc.input_ids[0])
    assert pieces[1:5] == ["mc", "##don", "##ald", "##s"]
    tags = [O, B, O, B, O, O, B, O]  # [CLS] mc ##don ##ald ##s in paris [SEP]
    assert decode_spans([one_hot(tags)], enc, 1) == [[(0, 9), (13, 18)]]


def test_viterbi_keeps_bio_consistent():
    strong = lambda tag: [0.0 if t == tag else -10.0 for t in range(3)]  # noqa: E731
    assert viterbi(torch.tensor([strong(I), strong(I)])) in ([B, I], [O, O])  # never I first
    em = torch.tensor([strong(O), [-10.0, -1.0, 0.0], strong(I)])  # O then "I I": the I opens as B
    assert viterbi(em) == [O, B, I]
    assert viterbi(torch.zeros(0, 3)) == []


def test_long_texts_are_read_in_windows_without_losing_a_span(tokenizer):
    words = ("the band played in paris last night with taylor swift at the stadium . " * 4).split()
    text = " ".join(words) + " #Nashville"
    spans, pos = [], 0
    for w in text.split(" "):
        at = text.index(w, pos)
        pos = at + len(w)
        if w in ("paris", "swift"):
            spans.append((at, pos))
    spans.append((text.index("Nashville"), len(text)))
    examples = [TaggedText(text, tuple(spans)), TaggedText("paris", ((0, 5),))]
    enc, _, decoded = round_trip(tokenizer, examples, max_length=16, stride=4)
    assert enc.text_index.count(0) > 3  # several windows for the long text, one for the short
    assert decoded == [sorted(spans), [(0, 5)]]


def test_empty_texts_have_no_spans_and_odd_ones_stay_in_bounds(tokenizer):
    tagger = tiny_tagger(tokenizer)
    randomise(tagger)  # a random tagger tags anything: spans must still be well-formed
    texts = ["", "   ", "😍", "日本語", "@@@ ## #1", "x" * 500]
    out = tagger.predict(texts)
    assert out[:2] == [[], []]
    for text, spans in zip(texts, out):
        assert all(0 <= a < b <= len(text) for a, b in spans) and spans == sorted(spans)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


# ----------------------------------------------------------------------------------------- training
def toy_examples() -> list[TaggedText]:
    out = []
    for name in ("Paris", "Taylor Swift", "Nashville", "NewYork"):
        text = f"the band played in {name} last night"
        out.append(TaggedText(text, ((19, 19 + len(name)),)))
    return out


def test_dry_run_trains_one_batch_and_moves_only_the_tagger(tokenizer):
    tagger = tiny_tagger(tokenizer)
    base = {k: v.clone() for k, v in tagger.encoder.state_dict().items() if "lora" not in k}
    before = tagger.trainable_state()
    result = train(tagger, toy_examples() * 3, {"toy": toy_examples()}, progress=False, dry_run=True)
    assert len(result.history) == 1 and result.history[0]["epoch"] == 1
    after = tagger.trainable_state()
    assert set(after) == set(before) and any(k.endswith("lora_a") for k in after)
    assert all("lora" in k or k.startswith(("case.", "head.")) for k in after)
    assert any(not torch.equal(before[k], after[k]) for k in after)  # one optimiser step happened
    frozen = {k: v for k, v in tagger.encoder.state_dict().items() if "lora" not in k}
    assert all(torch.equal(base[k], frozen[k]) for k in base)  # the encoder itself never moves


def test_training_learns_the_toy_spans(tokenizer):
    tagger = tiny_tagger(tokenizer, lr=5e-3, epochs=12, patience=12, batch_size=4, dropout=0.0, lora_dropout=0.0)
    examples = toy_examples() * 4
    result = train(tagger, examples, {"toy": toy_examples()}, progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.dev["toy"]["f1"] >= 75.0, result.history


# -------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_hash_checks(tokenizer, tmp_path):
    tagger = tiny_tagger(tokenizer)
    randomise(tagger)
    texts = ["Barack Obama loves #Nashville", "the band played in paris last night with taylor swift"]
    enc = encode(tokenizer, texts, 16, 4)
    tagger.eval()
    with torch.no_grad():
        logits = tagger(enc.input_ids, enc.attention_mask, enc.case_ids)
    spans = tagger.predict(texts)
    path = save_tagger(tmp_path / "ckpt", tagger, {"name": "tiny", "metrics": {"dev": {}}})
    card = json.loads((path / CARD).read_text())
    assert card["weights_sha256"] == sha256_file(path / WEIGHTS)
    assert card["format"] == "mmkg-mention-tagger/1" and card["config"]["lora_rank"] == 4
    assert card["encoder_fingerprint"] == tagger.base_fingerprint

    loaded, loaded_card = load_tagger(path, encoder=tiny_encoder(0), tokenizer=tokenizer, merge=False)
    assert loaded_card == card
    with torch.no_grad():
        assert torch.allclose(loaded(enc.input_ids, enc.attention_mask, enc.case_ids), logits, atol=1e-5)
    merged, _ = load_tagger(path, encoder=tiny_encoder(0), tokenizer=tokenizer)  # adapters folded in
    assert merged.merged and not any(p.requires_grad for p in merged.parameters())
    with torch.no_grad():
        assert torch.allclose(merged(enc.input_ids, enc.attention_mask, enc.case_ids), logits, atol=1e-4)
    assert merged.predict(texts) == spans
    with pytest.raises(ValueError, match="merged"):
        save_tagger(tmp_path / "again", merged, {})

    with pytest.raises(CheckpointError, match="another text encoder"):
        load_tagger(path, encoder=tiny_encoder(seed=7), tokenizer=tokenizer)
    raw = bytearray((path / WEIGHTS).read_bytes())
    raw[-1] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match"):
        load_tagger(path, encoder=tiny_encoder(0), tokenizer=tokenizer)
    with pytest.raises(CheckpointError, match="expected"):
        load_tagger(tmp_path / "nowhere", encoder=tiny_encoder(0), tokenizer=tokenizer)


def test_committed_checkpoint_is_small_and_matches_its_card():
    if not (DEFAULT_MENTION_CHECKPOINT / CARD).is_file():
        pytest.skip("no committed mention-tagger checkpoint")
    card = json.loads((DEFAULT_MENTION_CHECKPOINT / CARD).read_text())
    assert card["weights_sha256"] == sha256_file(DEFAULT_MENTION_CHECKPOINT / WEIGHTS)
    size = sum(f.stat().st_size for f in DEFAULT_MENTION_CHECKPOINT.iterdir())
    assert size <= 8 * 1024 * 1024, size
    assert set(card["metrics"]["dev"]) == {"twitter2017", "wnut16"}


# --------------------------------------------------------------------------- the detector's adapter
class FixedTagger:
    """Stands in for MentionTagger: returns given raw spans (tests the combination, not the model)."""

    def __init__(self, spans):
        self.spans, self.calls = spans, []

    def predict(self, texts, batch_size=64):
        self.calls.append(list(texts))
        return [list(self.spans.get(t, [])) for t in texts]


def test_detector_cuts_tagger_spans_at_urls_and_emoji_and_adds_rules_on_request():
    from extraction.detection import DEFAULT_TAGGER_RULES, TWEET_RULES, EntityDetector
    from mmkg.records import Post

    text = "RT @BleacherReport: the Golden State Warriors!!! see https://t.co/Ab12 #LosAngeles #Lakers 😍Paris"
    url = text.index("https")
    raw = [
        (text.index("the Golden"), text.index("!!!") + 3),  # leading "the" and punctuation
        (text.index("Bleacher") - 1, text.index(":")),  # "@BleacherReport"
        (url + 8, url + 12),  # inside a URL: never a mention
        (text.index("#LosAngeles") + 1, text.index("#Lakers") + 7),  # two neighbouring hashtags
        (text.index("😍"), len(text)),  # the emoji is cut off
    ]
    tagger = FixedTagger({text: raw})
    det = EntityDetector(tagger=tagger)
    assert det.mode == "tagger" and det.nlp is None  # spaCy is not loaded with the tagger
    assert det.rules == DEFAULT_TAGGER_RULES
    post = Post(id="p", text=text, created_at="2026-01-01T00:00:00+00:00")
    mentions = det.detect([post])
    assert [(m.text, m.detector) for m in mentions] == [
        ("@BleacherReport", "tagger"), ("the Golden State Warriors!!!", "tagger"),
        ("LosAngeles #Lakers", "tagger"), ("Paris", "tagger")]
    assert all(text[m.start : m.end] == m.text for m in mentions)
    assert tagger.calls == [[text]]  # one batch, each post once

    ruled = EntityDetector(tagger=tagger, rules=TWEET_RULES).detect([post])
    assert [(m.text, m.detector) for m in ruled] == [
        ("BleacherReport", "handle"), ("Golden State Warriors", "tagger"), ("LosAngeles", "tagger"),
        ("Lakers", "tagger"), ("Paris", "tagger")]  # the handle rule wins; trimmed; cut at the '#'


def test_detector_falls_back_to_spacy_and_rules_without_a_checkpoint(tmp_path, monkeypatch, caplog):
    pytest.importorskip("spacy")
    from extraction.detection import EntityDetector, resolve_mention_checkpoint
    from mmkg.records import Post

    assert resolve_mention_checkpoint("") == DEFAULT_MENTION_CHECKPOINT
    assert resolve_mention_checkpoint("none") is None and resolve_mention_checkpoint(None) is None
    monkeypatch.setenv("MMKG_MENTION_CHECKPOINT", str(tmp_path / "absent"))
    try:
        with caplog.at_level(logging.WARNING, logger="extraction.detection"):
            det = EntityDetector()
    except OSError as exc:  # spaCy model package not installed
        pytest.skip(f"spaCy model not available: {exc}")
    assert det.mode == "spacy" and det.tagger is None and det.nlp is not None
    assert "not found" in caplog.text
    text = "Barack Obama met @AngelaMerkel in Berlin"
    mentions = det.detect([Post(id="p", text=text, created_at="2026-01-01T00:00:00+00:00")])
    assert {(m.text, m.detector) for m in mentions} >= {("Barack Obama", "spacy"), ("AngelaMerkel", "handle")}
    monkeypatch.setenv("MMKG_MENTION_CHECKPOINT", "none")
    assert EntityDetector(nlp=det.nlp).mode == "spacy"


# ---------------------------------------------------------------------------- the committed tagger
@pytest.fixture(scope="module")
def shipped_detector():
    if not (DEFAULT_MENTION_CHECKPOINT / CARD).is_file():
        pytest.skip("no committed mention-tagger checkpoint")
    from extraction.detection import EntityDetector

    return EntityDetector(mention_checkpoint=DEFAULT_MENTION_CHECKPOINT)


@pytest.mark.slow
def test_shipped_tagger_finds_names_with_exact_offsets(shipped_detector):
    from mmkg.records import Post

    assert shipped_detector.mode == "tagger"
    posts = [Post(id="a", text="Barack Obama met Angela Merkel in Berlin yesterday.", created_at="2026-01-01T00:00:00Z"),
             Post(id="b", text="RT @NBA: LeBron James wins again #NBAFinals https://t.co/x1", created_at="2026-01-01T00:00:00Z")]
    mentions = shipped_detector.detect(posts)
    by_post = {p.id: [m.text for m in mentions if m.post_id == p.id] for p in posts}
    assert by_post["a"] == ["Barack Obama", "Angela Merkel", "Berlin"]
    assert "LeBron James" in by_post["b"] and "NBA" in by_post["b"]
    assert all(m.text == next(p for p in posts if p.id == m.post_id).text[m.start : m.end] for m in mentions)
    assert shipped_detector.detect(posts[1:]) == [m for m in mentions if m.post_id == "b"]  # batching is neutral


LONG_POST = " ".join(f"Angela Merkel met Emmanuel Macron in Berlin on day {i}." for i in range(40))


@pytest.mark.slow
@pytest.mark.parametrize("text", ["", "#", "@@@ ## #1 &#39; RT", "東京でラーメンを食べた #ラーメン @友達", "👍🏽👍🏽",
                                  "x" * 5000, LONG_POST])
def test_shipped_tagger_handles_odd_and_long_texts(shipped_detector, text):
    from mmkg.records import Post

    mentions = shipped_detector.detect([Post(id="p", text=text, created_at="2026-01-01T00:00:00Z")])
    spans = [(m.start, m.end) for m in mentions]
    assert spans == sorted(spans) and all(a < b and text[a:b] == m.text for (a, b), m in zip(spans, mentions))
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    if text == LONG_POST:  # ~600 word pieces, read in windows: every sentence's names found alike
        assert [m.text for m in mentions] == ["Angela Merkel", "Emmanuel Macron", "Berlin"] * 40
