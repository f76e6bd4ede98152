"""Checkpoint round trip and hash check; the benchmark splits (research data tests skip without it)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mmkg.settings import research_data_dir
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.config import MGVMoEConfig
from models.data import (MASK_WORD, NO_CLASS, ClassSplit, Sample, bio_spans, detector_false_positives, load_mnre,
                         load_split, load_wnut_fold, masked_mentions)
from models.modeling import MGVMoE
from models.train import balanced_batches, grouped_batches
from tests.models.conftest import random_batch

needs_data = pytest.mark.skipif(research_data_dir() is None,
                                reason="research data absent: set MMKG_DATA to shared/data (MNRE, WNUT-16)")


def test_save_then_load_gives_identical_scores(tmp_path):
    config = MGVMoEConfig.tiny()
    torch.manual_seed(0)
    model = MGVMoE(config).eval()
    batch, class_emb = random_batch(config)
    markers = torch.randn(6, config.text_hidden)
    save_checkpoint(tmp_path / "ck", model, markers, {"name": "t", "labels": {"train": ["a"]}})
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.config == config
    assert torch.equal(loaded.marker_embeddings, markers)
    assert torch.equal(loaded.model(batch, class_emb).scores, model(batch, class_emb).scores)
    assert loaded.model_version.startswith("mg-vmoe/t@")


def test_a_card_recalibrated_over_the_same_weights_is_a_new_model_version(tmp_path):
    config = MGVMoEConfig.tiny()
    save_checkpoint(tmp_path / "ck", MGVMoE(config), torch.zeros(6, config.text_hidden),
                    {"name": "t", "thresholds": {"min_score": 0.5}})
    before = load_checkpoint(tmp_path / "ck")
    card_path = tmp_path / "ck" / "checkpoint.json"
    card = json.loads(card_path.read_text())
    card["thresholds"]["min_score"] = 0.7  # the weights file and its hash are unchanged
    card_path.write_text(json.dumps(card))
    after = load_checkpoint(tmp_path / "ck")
    assert after.card["weights_sha256"] == before.card["weights_sha256"]
    assert after.model_version != before.model_version
    card["metrics"] = {"note": "not behaviour"}  # metrics do not change what the model writes
    card_path.write_text(json.dumps(card))
    assert load_checkpoint(tmp_path / "ck").model_version == after.model_version


def test_altered_weights_are_refused(tmp_path):
    config = MGVMoEConfig.tiny()
    save_checkpoint(tmp_path / "ck", MGVMoE(config), torch.zeros(6, config.text_hidden), {"name": "t"})
    weights = tmp_path / "ck" / "heads.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nothing-here")


def test_bio_spans():
    assert bio_spans(["B-person", "I-person", "O", "B-geo-loc", "B-geo-loc", "I-company"]) == [
        (0, 2, "person"), (3, 4, "geo-loc"), (4, 5, "geo-loc"), (5, 6, "company")]


@needs_data
def test_mnre_seed0_split_is_exactly_the_reference():
    split = load_mnre(0)
    assert split.train_classes == ["/per/misc/religion", "/org/org/subsidiary", "/per/per/parent",
                                   "/org/org/alternate_names", "/loc/loc/contain", "/per/misc/race",
                                   "/per/misc/awarded", "/per/per/siblings"]
    assert split.val_classes == ["/per/per/alternate_names", "/per/loc/place_of_residence",
                                 "/per/loc/place_of_birth", "/per/org/member_of", "/per/misc/present_in",
                                 "/per/per/peer", "/per/per/charges"]
    assert split.test_classes == ["/per/per/neighbor", "/org/loc/locate_at", "/per/per/alumi", "/misc/loc/held_on",
                                  "/misc/misc/part_of", "/per/misc/nationality", "/per/per/couple"]
    assert (len(split.train), len(split.val), len(split.test)) == (1224, 3482, 1061)
    # every None pair is kept, by its file: trained on (train), validated on (val), tested on (test)
    for part, file, n in (("train_negatives", "mnre_train", 7744), ("negatives", "mnre_val", 1000),
                          ("test_negatives", "mnre_test", 974)):
        pairs = getattr(split, part)
        assert len(pairs) == n and all(s.label == "None" and file in s.uid for s in pairs)
    assert split.counts["lines"] == 15485 == 5767 + 7744 + 1000 + 974
    assert split.symmetric == {"/per/per/siblings", "/per/per/couple", "/per/per/neighbor", "/per/per/peer",
                               "/per/per/alumi"}
    other = load_mnre(1)
    assert set(other.test_classes) != set(split.test_classes)
    assert set(other.train_classes) | set(other.val_classes) | set(other.test_classes) == \
        set(split.train_classes) | set(split.val_classes) | set(split.test_classes)


@needs_data
def test_the_wide_relation_split_trains_on_four_validation_relations_and_never_reads_test():
    from models.data import load_split

    base, wide = load_mnre(0), load_split("mnre-pipeline-wide")
    moved = base.val_classes[:4]
    assert wide.train_classes == base.train_classes + moved and wide.val_classes == base.val_classes[4:]
    assert {s.uid for s in wide.train} == {s.uid for s in base.train + base.val if s.label in wide.train_classes}
    assert {s.label for s in wide.val} == set(base.val_classes[4:])
    assert not wide.test and not wide.test_negatives and not set(base.test_classes) & set(wide.train_classes)
    assert len(wide.negatives) == 1000 and len(wide.train_negatives) == 7744


@needs_data
def test_wnut_folds_rotate_disjoint_groups():
    folds = [load_wnut_fold(k) for k in (1, 2, 3)]
    assert folds[0].train_classes == ["geo-loc", "musicartist", "movie"]
    assert folds[0].test_classes == ["company", "facility", "tvshow"]
    for f in folds:
        assert not set(f.train_classes) & set(f.val_classes) and not set(f.val_classes) & set(f.test_classes)
        assert all(s.label in f.test_classes for s in f.test)
        assert "other" not in {s.label for s in f.train + f.val + f.test}
    assert len(folds[0].train) == len(folds[2].val) == len(folds[1].test)


def test_grouped_batches_score_each_batch_against_its_own_label_set():
    def sample(i: int, label: str) -> Sample:
        return Sample(f"s{i}", ("w",), ((0, 1),), label)

    wnut = [sample(i, c) for i, c in enumerate(["person", "company"] * 5)]
    tw = [sample(100 + i, c) for i, c in enumerate(["PER", "ORG", "LOC", "MISC"] * 10)]
    groups = [["person", "company"], ["PER", "ORG", "LOC", "MISC"]]
    split = ClassSplit("x", "met", groups[0] + groups[1], ["PER"], [], wnut + tw, [], [], "p", train_groups=groups)
    batches = grouped_batches(split, steps=10, batch_size=4, rng=np.random.default_rng(0))
    assert len(batches) == 10
    assert sum(classes == groups[0] for classes, _ in batches) == 2  # 10 of 50 samples: 2 of 10 steps
    for classes, samples in batches:
        assert all(s.label in classes for s in samples)
    # one label set: exactly the class-balanced batches over the training classes, as before
    single = dataclasses.replace(split, train_groups=[])
    plain = balanced_batches(split.train, split.train_classes, 3, 4, np.random.default_rng(1))
    assert [b for _, b in grouped_batches(single, 3, 4, np.random.default_rng(1))] == plain


@needs_data
def test_the_all_types_split_reads_train_files_only_and_keeps_test_unread():
    split = load_split("tweets-all-types")
    assert split.train_groups[1] == ["PER", "LOC", "ORG", "MISC"] == split.val_classes
    assert set(split.train_classes) == set(split.train_groups[0]) | set(split.train_groups[1])
    files = {s.uid.split(":")[0] for s in split.train + split.train_negatives}
    assert files == {"wnut16/train", "twitter2017/train.txt"}
    assert {s.uid.split(":")[0] for s in split.val} == {"twitter2017/valid.txt"}
    assert not split.test and not split.negatives and "other" not in {s.label for s in split.train}
    assert split.train_negatives and all(s.label in NO_CLASS for s in split.train_negatives)


@needs_data
def test_the_events_split_types_misc_mentions_by_the_readers_agreed_labels_only():
    """``tweets-all-types+events``: Twitter-2017 MISC and WNUT-16 train ``other`` mentions take the class of the two
    readers' agreed label (models/annotations); nothing else moves, no test file is read, no MISC is left."""
    from models.data import MISC_TYPE_CLASSES, agreed_label, misc_type_labels

    plain, events = load_split("tweets-all-types"), load_split("tweets-all-types+events")
    assert events.val_classes == ["PER", "LOC", "ORG", "EVENT", "PRODUCT"]
    assert events.train_groups[1] == ["PER", "LOC", "ORG", "EVENT", "PRODUCT", "MISC-OTHER"]
    assert "event" in events.train_groups[0] and "MISC" not in events.train_classes
    labels = misc_type_labels("train")
    before = {s.uid: s.label for s in plain.train + plain.train_negatives}
    for s in events.train:
        if before[s.uid] in ("MISC", "other"):
            corpus = "twitter2017" if s.uid.startswith("twitter2017") else "wnut16"
            assert MISC_TYPE_CLASSES[corpus][agreed_label(labels[s.uid])] == s.label
        else:
            assert before[s.uid] == s.label
    moved = [u for u, label in before.items() if label == "MISC" and u not in {s.uid for s in events.train}]
    assert len(moved) == events.counts["twitter2017_train_misc_left_out"] == 6  # the readers disagree on these
    files = {s.uid.split(":")[0] for s in events.train + events.train_negatives}
    assert files == {"wnut16/train", "twitter2017/train.txt"} and not events.test
    assert {s.label for s in events.val} == set(events.val_classes)


def test_mnre_relation_arguments_are_typed_by_their_signature_once_per_span(tmp_path):
    """``mnre_typed_mentions``: a pair's head and tail take the per / org / loc types its relation names; ``None``
    pairs and ``misc`` arguments type nothing; a span met in several pairs is one sample; a span two signatures
    type differently is left out and counted; only the train file is read."""
    from models.data import mnre_typed_mentions

    post = ["Ana", "Costa", "joins", "Falcons", "in", "Lisbon", "for", "the", "Cup"]
    other = ["Porto", "hosts", "Porto"]
    rows = [
        {"token": post, "h": {"pos": [0, 2]}, "t": {"pos": [3, 4]}, "relation": "/per/org/member_of"},
        {"token": post, "h": {"pos": [3, 4]}, "t": {"pos": [5, 6]}, "relation": "/org/loc/locate_at"},
        {"token": post, "h": {"pos": [0, 2]}, "t": {"pos": [7, 9]}, "relation": "/per/misc/present_in"},
        {"token": post, "h": {"pos": [0, 2]}, "t": {"pos": [5, 6]}, "relation": "None"},
        {"token": other, "h": {"pos": [0, 1]}, "t": {"pos": [2, 3]}, "relation": "/org/loc/locate_at"},
        {"token": other, "h": {"pos": [0, 1]}, "t": {"pos": [2, 3]}, "relation": "/loc/loc/contain"},
    ]
    (tmp_path / "mnre").mkdir()
    (tmp_path / "mnre" / "mnre_train.txt").write_text("\n".join(repr({**r, "img_id": "x.jpg"}) for r in rows) + "\n")
    samples, counts = mnre_typed_mentions(tmp_path)
    typed = {(" ".join(s.tokens[s.spans[0][0]:s.spans[0][1]]), s.spans[0]): s.label for s in samples}
    assert typed == {("Ana Costa", (0, 2)): "PER", ("Falcons", (3, 4)): "ORG", ("Lisbon", (5, 6)): "LOC",
                     ("Porto", (2, 3)): "LOC"}
    assert counts["mnre_train_mentions_typed_two_ways"] == 1  # "Porto" at 0: an org, then a loc
    assert all(s.uid.startswith("mnre/mnre_train.txt:") and s.image is None for s in samples)
    people_and_places, _ = mnre_typed_mentions(tmp_path, ("per", "loc"))
    assert {s.label for s in people_and_places} == {"PER", "LOC"} and len(people_and_places) == 3


@needs_data
def test_the_mnre_split_adds_mnre_train_mentions_to_the_twitter_label_set_and_nothing_else():
    events, mnre = load_split("tweets-all-types+events"), load_split("tweets-all-types+events+mnre")
    added = [s for s in mnre.train if s.uid.startswith("mnre/")]
    assert [s for s in mnre.train if not s.uid.startswith("mnre/")] == events.train
    assert mnre.val == events.val and mnre.train_negatives == events.train_negatives
    assert {s.label for s in added} == {"PER", "ORG", "LOC"} and mnre.train_groups == events.train_groups
    assert {s.uid.split(":")[0] for s in added} == {"mnre/mnre_train.txt"}
    assert len(added) == sum(mnre.counts[f"mnre_train_{k}"] for k in ("PER", "ORG", "LOC"))


class _FixedTagger:
    """Stands in for the mention tagger: proposes the given character spans for every text."""

    def __init__(self, spans):
        self.spans, self.texts = spans, []

    def predict(self, texts):
        self.texts += texts
        return [self.spans for _ in texts]


def test_masked_mentions_hide_the_name_only_in_a_fixed_share_of_copies():
    samples = [Sample(f"t:{i}:1-3", ("at", "Gold", "Coast", "today", str(i)), ((1, 3),), "LOC", "img.jpg" if i % 2 else None)
               for i in range(2000)]
    masked = masked_mentions(samples, 0.3)
    assert masked == masked_mentions(samples, 0.3)  # the same copies on every run
    assert 0.27 < len(masked) / len(samples) < 0.33
    by_uid = {s.uid: s for s in samples}
    for m in masked:
        original = by_uid[m.uid.removesuffix(":masked")]
        assert m.tokens == ("at", MASK_WORD, MASK_WORD, "today", original.tokens[4])
        assert (m.spans, m.label, m.image) == (original.spans, original.label, original.image)
    assert masked_mentions(samples, 0.0) == []


@needs_data
def test_the_masked_split_adds_masked_copies_to_train_and_leaves_validation_as_it_was():
    events, masked = load_split("tweets-all-types+events"), load_split("tweets-all-types+events+masked")
    added = masked.train[len(events.train):]
    assert masked.train[: len(events.train)] == events.train and added == masked_mentions(events.train)
    assert masked.val == events.val and masked.negatives == events.negatives
    assert masked.train_negatives == events.train_negatives and masked.train_groups == events.train_groups
    assert masked.counts["train_mentions_masked_copies"] == len(added) > 0
    with pytest.raises(ValueError, match="not an entity typing split"):
        load_split("mnre-pipeline+masked")


def test_detector_false_positives_are_proposed_spans_that_are_no_gold_mention():
    tokens = ["Go", "#", "RedSox", "at", "Fenway", "Park", "!"]
    tags = ["O", "O", "B-ORG", "O", "B-LOC", "I-LOC", "O"]
    # written: "Go #RedSox at Fenway Park !": RedSox 4-10, Fenway Park 14-25
    tagger = _FixedTagger([(0, 2), (4, 10), (14, 20), (14, 25), (21, 23)])
    assert detector_false_positives([(tokens, tags)], tagger) == [[(0, 1), (4, 5)]]
    assert tagger.texts == ["Go #RedSox at Fenway Park !"]  # the post as written, sigils glued


@needs_data
def test_the_all_relations_split_trains_on_the_train_file_validates_on_the_val_file_and_never_reads_test():
    from models.data import load_split

    split, seed0 = load_split("mnre-all-relations"), load_mnre(0)
    every = set(seed0.train_classes) | set(seed0.val_classes) | set(seed0.test_classes)
    assert set(split.train_classes) == every and set(split.val_classes) <= every
    assert all("mnre_train" in s.uid for s in split.train + split.train_negatives)
    assert all("mnre_val" in s.uid for s in split.val + split.negatives)
    assert not split.test and not split.test_negatives and not split.test_classes
    assert (len(split.train), len(split.train_negatives), len(split.val), len(split.negatives)) == (4503, 7744, 624, 1000)
    assert split.symmetric == seed0.symmetric
