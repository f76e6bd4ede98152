"""MGVMoEExtractor against the pipeline interface, with tiny encoders and tiny random heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from extraction.ontology import Ontology
from extraction.records import OTHER_TYPE, ImageRef, Mention, Post
from extraction.zero_shot import ZeroShotExtractor
from models.checkpoint import Checkpoint
from models.config import MGVMoEConfig
from models.extractor import MGVMoEExtractor, window
from models.modeling import MGVMoE

ONTOLOGY = Ontology.from_dict({
    "version": 1,
    "entity_types": [{"name": "Person", "description": "a person"}, {"name": "Location", "description": "a city"},
                     {"name": "Organization", "description": "a band or team"}],
    "relation_types": [{"name": "place_of_residence", "description": "the person lives in the city",
                        "allowed": [["Person", "Location"]]},
                       {"name": "member_of", "description": "the person plays in the band",
                        "allowed": [["Person", "Organization"]]}],
})


def _checkpoint(task: str, threshold: float, name: str) -> Checkpoint:
    torch.manual_seed(0)
    config = MGVMoEConfig.tiny(task, label_text="description")
    card = {"name": name, "weights_sha256": "0" * 64, "thresholds": {"min_confidence": threshold}}
    return Checkpoint(config, MGVMoE(config).eval(), torch.zeros(6, 32), card)


@pytest.fixture()
def posts(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    return {
        "p1": Post("p1", "the band played in paris last night", "2024-01-01T00:00:00Z",
                   images=(ImageRef("img.png", "ok", "abc", str(path)),)),
        "p2": Post("p2", "star won award born in city", "2024-01-01T00:00:00Z",
                   images=(ImageRef("broken.jpg", "ok", "def", str(broken)),)),
        "p3": Post("p3", "the band with their new album", "2024-01-01T00:00:00Z"),
    }


def _mentions():
    return [Mention("p1", 0, 8, "the band", "test"), Mention("p1", 19, 24, "paris", "test"),
            Mention("p2", 0, 4, "star", "test"), Mention("p2", 23, 27, "city", "test"),
            Mention("p3", 4, 8, "band", "test")]


def _extractor(tiny_text_encoder, tiny_image_encoder, met_threshold=0.0, mre_threshold=0.0):
    return MGVMoEExtractor(_checkpoint("met", met_threshold, "met-tiny"), _checkpoint("mre", mre_threshold, "mre-tiny"),
                           text_encoder=tiny_text_encoder, image_encoder=tiny_image_encoder, batch_size=2)


def test_types_every_mention_and_encodes_each_image_once(posts, tiny_text_encoder, tiny_image_encoder):
    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    assert isinstance(ex, ZeroShotExtractor)
    typed = ex.type_mentions(posts, _mentions(), ONTOLOGY)
    assert [t.mention for t in typed] == _mentions()
    assert all(t.entity_type in {"Person", "Location", "Organization"} for t in typed)
    assert all(t.label_set_id == ONTOLOGY.label_set_id and t.model_version == ex.model_version for t in typed)
    assert ex.model_version.startswith("mg-vmoe/met-tiny@") and "mre-tiny@" in ex.model_version
    assert ex.stats["images_encoded"] == 1 and ex.stats["images_failed"] == 1  # 2 mentions, 1 encode
    again = ex.type_mentions(posts, _mentions(), ONTOLOGY)
    assert [t.entity_type for t in again] == [t.entity_type for t in typed]  # deterministic
    ex.extract_relations(posts, again, ONTOLOGY)
    # Cached by image hash within a shard (type_mentions + extract_relations), dropped between shards
    # so memory stays flat: the second type_mentions call encoded the image once more, relations none.
    assert ex.stats["images_encoded"] == 2


def test_abstains_below_the_threshold(posts, tiny_text_encoder, tiny_image_encoder):
    ex = _extractor(tiny_text_encoder, tiny_image_encoder, met_threshold=1.01, mre_threshold=1.01)
    typed = ex.type_mentions(posts, _mentions(), ONTOLOGY)
    assert {t.entity_type for t in typed} == {OTHER_TYPE}
    assert ex.extract_relations(posts, typed, ONTOLOGY) == []


def test_relations_only_allowed_and_within_a_post(posts, tiny_text_encoder, tiny_image_encoder):
    from extraction.records import TypedMention

    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    m = _mentions()
    typed = [TypedMention(m[0], "Organization", 0.9, "x", "y"), TypedMention(m[1], "Location", 0.9, "x", "y"),
             TypedMention(m[2], "Person", 0.9, "x", "y"), TypedMention(m[3], "Location", 0.9, "x", "y"),
             TypedMention(m[4], "Person", 0.9, "x", "y")]
    rels = ex.extract_relations(posts, typed, ONTOLOGY)
    assert [(r.head.mention.text, r.tail.mention.text, r.relation) for r in rels] == [
        ("star", "city", "place_of_residence")]
    assert 0.0 < rels[0].score <= 1.0 and rels[0].post_id == "p2"


def test_window_keeps_spans_aligned():
    text = "x" * 1000 + " Obama met Merkel " + "y" * 1000
    cut, spans = window(text, [(1001, 1006), (1011, 1017)], chars=20)
    assert [cut[s:e] for s, e in spans] == ["Obama", "Merkel"]
