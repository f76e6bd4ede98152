"""MGVMoEExtractor against the pipeline interface, with tiny encoders and tiny random heads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from extraction.mg_vmoe import MGVMoEExtractor, window
from extraction.zero_shot import ZeroShotExtractor
from mmkg.ontology import Ontology
from mmkg.records import OTHER_TYPE, ImageRef, Mention, Post
from models.checkpoint import Checkpoint
from models.config import MGVMoEConfig
from models.modeling import MGVMoE

ONTOLOGY_DICT = {
    "version": 1,
    "entity_types": [{"name": "Person", "description": "a person"}, {"name": "Location", "description": "a city"},
                     {"name": "Organization", "description": "a band or team"}],
    "relation_types": [{"name": "place_of_residence", "description": "the person lives in the city",
                        "allowed": [["Person", "Location"]]},
                       {"name": "member_of", "description": "the person plays in the band",
                        "allowed": [["Person", "Organization"]]}],
}
ONTOLOGY = Ontology.from_dict(ONTOLOGY_DICT)


def _checkpoint(task: str, threshold: float, name: str, text_input: str = "spans") -> Checkpoint:
    torch.manual_seed(0)
    config = MGVMoEConfig.tiny(task, label_text="description", text_input=text_input)
    card = {"name": name, "weights_sha256": "0" * 64, "thresholds": {"min_score": threshold}}
    return Checkpoint(config, MGVMoE(config).eval(), torch.zeros(6, 32), card)


@pytest.fixture()
def posts(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    return {
        "p1": Post("p1", "the band played in paris last night", "2024-01-01T00:00:00Z",
                   images=(ImageRef("img.png", "ok", sha(path), str(path)),)),
        "p2": Post("p2", "star won award born in city", "2024-01-01T00:00:00Z",
                   images=(ImageRef("broken.jpg", "ok", sha(broken), str(broken)),)),
        "p3": Post("p3", "the band with their new album", "2024-01-01T00:00:00Z"),
    }


def _mentions():
    return [Mention("p1", 0, 8, "the band", "test"), Mention("p1", 19, 24, "paris", "test"),
            Mention("p2", 0, 4, "star", "test"), Mention("p2", 23, 27, "city", "test"),
            Mention("p3", 4, 8, "band", "test")]


def _extractor(tiny_text_encoder, tiny_image_encoder, met_threshold=-float("inf"), mre_threshold=-float("inf")):
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


def test_an_image_changed_after_staging_is_not_read_and_the_post_is_scored_text_only(posts, tiny_text_encoder,
                                                                                     tiny_image_encoder):
    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    before = ex.type_mentions(posts, _mentions(), ONTOLOGY)
    Path(posts["p1"].images[0].path).write_bytes(Path(posts["p1"].images[0].path).read_bytes() + b"\0")
    changed = _extractor(tiny_text_encoder, tiny_image_encoder)
    after = changed.type_mentions(posts, _mentions(), ONTOLOGY)
    assert changed.stats["images_changed_since_staging"] == 1 and changed.stats["images_encoded"] == 0
    assert changed.stats["images_failed"] == 2 and ex.stats["images_encoded"] == 1
    assert [t.mention for t in after] == [t.mention for t in before]  # nothing lost: typed without the image


def test_each_post_text_is_encoded_once_for_all_its_mentions_and_pairs(posts, tiny_text_encoder, tiny_image_encoder):
    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    typed = ex.type_mentions(posts, _mentions(), ONTOLOGY)  # 5 mentions in 3 posts
    assert ex.stats["posts_encoded"] == 3
    ex.extract_relations(posts, typed, ONTOLOGY)  # pairs reuse the shard's post states
    assert ex.stats["posts_encoded"] == 3 and ex.stats["windowed_spans"] == 0


def test_scores_do_not_depend_on_batching_or_on_the_other_posts(posts, tiny_text_encoder, tiny_image_encoder):
    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    together = ex.type_mentions(posts, _mentions(), ONTOLOGY)
    alone = [ex.type_mentions({m.post_id: posts[m.post_id]}, [m], ONTOLOGY)[0] for m in _mentions()]
    assert [t.entity_type for t in alone] == [t.entity_type for t in together]
    assert [t.score for t in alone] == pytest.approx([t.score for t in together], abs=1e-5)


def test_a_mention_past_max_length_is_read_from_a_window(tiny_text_encoder, tiny_image_encoder):
    text = " ".join(["the"] * 60) + " paris"  # the tiny encoder reads 32 word pieces
    post = Post("long", text, "2024-01-01T00:00:00Z")
    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    typed = ex.type_mentions({"long": post}, [Mention("long", len(text) - 5, len(text), "paris", "test")], ONTOLOGY)
    assert len(typed) == 1 and ex.stats["windowed_spans"] == 1 and ex.stats["truncated_spans"] == 0


def test_the_relation_threshold_does_not_move_when_similar_labels_are_added(posts, tiny_text_encoder, tiny_image_encoder):
    """Abstention is on the raw score, so adding a relation to the ontology cannot push an allowed
    pair's relation under the threshold (a softmax probability would shrink)."""
    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    m = _mentions()
    from mmkg.records import TypedMention

    typed = [TypedMention(m[2], "Person", 0.9, "x", "y"), TypedMention(m[3], "Location", 0.9, "x", "y")]
    with torch.inference_mode():
        raw = ex._scores(ex.mre, [(posts["p2"], [(0, 4), (23, 27)])], ex._label_embeddings(ONTOLOGY, "relation", ex.mre))
    residence = float(raw[0, 0])
    ex.mre.card["thresholds"] = {"min_score": residence - 1e-4}
    bigger = Ontology.from_dict({**ONTOLOGY_DICT, "relation_types": [
        *ONTOLOGY_DICT["relation_types"],
        {"name": "lives_in", "description": "the person lives in the city", "allowed": [["Organization", "Location"]]},
        {"name": "born_in", "description": "the person was born in the city", "allowed": [["Organization", "Location"]]}]})
    for ontology in (ONTOLOGY, bigger):
        rels = ex.extract_relations(posts, typed, ontology)
        assert [r.relation for r in rels] == ["place_of_residence"]


def test_the_relation_rule_writes_a_pair_only_when_its_relation_stands_clear_of_every_other(
        posts, tiny_text_encoder, tiny_image_encoder):
    """``thresholds.decision``: the calibrated threshold moved by ``margin``; the best allowed relation must beat
    every other relation of the ontology (allowed or not) by ``min_gap`` raw points, else the pair abstains as
    ambiguous (counted). Without it, today's rule: the calibrated threshold alone."""
    from extraction.mg_vmoe import RelationRule, relation_rule
    from mmkg.records import TypedMention

    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    m = _mentions()
    typed = [TypedMention(m[2], "Person", 0.9, "x", "y"), TypedMention(m[3], "Location", 0.9, "x", "y")]
    with torch.inference_mode():
        raw = ex._scores(ex.mre, [(posts["p2"], [(0, 4), (23, 27)])], ex._label_embeddings(ONTOLOGY, "relation", ex.mre))
    residence, member = float(raw[0, 0]), float(raw[0, 1])
    gap = residence - member
    assert relation_rule(ex.mre) == RelationRule(float(ex.mre.thresholds["min_score"]), float("-inf"))

    def written(thresholds: dict) -> list[str]:
        ex.mre.card["thresholds"] = thresholds
        return [r.relation for r in ex.extract_relations(posts, typed, ONTOLOGY)]

    assert written({"min_score": residence - 1e-4}) == ["place_of_residence"]  # member_of is not allowed here ...
    ambiguous = {"min_score": residence - 1e-4, "decision": {"margin": 0.0, "min_gap": abs(gap) + 1.0}}
    if gap > 0:  # ... but it competes for the gap: a pair reading as both is written as neither
        assert written(ambiguous) == [] and ex.stats["abstained_pairs_ambiguous"] == 1
        assert written({**ambiguous, "decision": {"min_gap": gap - 1e-4}}) == ["place_of_residence"]
    else:  # the only allowed relation is not the pair's best reading: never written with a positive gap
        assert written({**ambiguous, "decision": {"min_gap": 1e-4}}) == []
    # the margin moves the calibrated threshold
    assert written({"min_score": residence + 1.0, "decision": {"margin": -1.0 - 1e-4}}) == ["place_of_residence"]
    assert written({"min_score": residence + 1.0, "decision": {"margin": -0.5}}) == []


def test_a_relation_checkpoint_reading_surfaces_encodes_each_surface_once(posts, tiny_text_encoder, tiny_image_encoder):
    torch.manual_seed(0)
    config = MGVMoEConfig.tiny("mre", label_text="description", text_input="spans", similarity_prior=1.0,
                               argument_prior=2.0, argument_input="surface")
    card = {"name": "mre-surface", "weights_sha256": "0" * 64, "thresholds": {"min_score": -float("inf")}}
    surface = Checkpoint(config, MGVMoE(config).eval(), torch.zeros(6, 32), card)
    span_model = MGVMoE(config.replace(argument_input="span")).eval()
    span_model.load_state_dict(surface.model.state_dict())
    span = Checkpoint(span_model.config, span_model, torch.zeros(6, 32), dict(card))
    pair = [(posts["p2"], [(0, 4), (23, 27)]), (posts["p2"], [(23, 27), (0, 4)])]
    raw = {}
    for name, ckpt in (("surface", surface), ("span", span)):
        ex = MGVMoEExtractor(_checkpoint("met", 0.0, "met-tiny"), ckpt, text_encoder=tiny_text_encoder,
                             image_encoder=tiny_image_encoder)
        with torch.inference_mode():
            raw[name] = ex._scores(ex.mre, pair, ex._label_embeddings(ONTOLOGY, "relation", ex.mre))
        assert ex.stats["surfaces_encoded"] == (2 if name == "surface" else 0)  # "star", "city": once each
    assert not torch.allclose(raw["surface"], raw["span"])


def test_refuses_checkpoints_trained_with_entity_markers(tiny_text_encoder, tiny_image_encoder):
    with pytest.raises(ValueError, match="text_input='spans'"):
        MGVMoEExtractor(_checkpoint("met", 0.0, "met-markers", text_input="markers"), _checkpoint("mre", 0.0, "mre"),
                        text_encoder=tiny_text_encoder, image_encoder=tiny_image_encoder)


def test_abstains_below_the_threshold(posts, tiny_text_encoder, tiny_image_encoder):
    ex = _extractor(tiny_text_encoder, tiny_image_encoder, met_threshold=float("inf"), mre_threshold=float("inf"))
    typed = ex.type_mentions(posts, _mentions(), ONTOLOGY)
    assert {t.entity_type for t in typed} == {OTHER_TYPE}
    assert ex.extract_relations(posts, typed, ONTOLOGY) == []


def test_relations_only_allowed_and_within_a_post(posts, tiny_text_encoder, tiny_image_encoder):
    from mmkg.records import TypedMention

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


def test_one_surface_form_gets_one_type_across_the_shard(tiny_text_encoder, tiny_image_encoder, monkeypatch):
    """The same name in different posts is one entity: its mentions are typed together (mean raw score),
    so one mention that reads differently does not split it by type; other names keep their own type."""
    texts = ["the band played in paris", "paris photo of a car", "sky tree house paris star"]
    posts = {f"q{i}": Post(f"q{i}", t, "2024-01-01T00:00:00Z") for i, t in enumerate(texts)}
    mentions = [Mention(pid, p.text.index("paris"), p.text.index("paris") + 5, "paris", "test")
                for pid, p in posts.items()] + [Mention("q0", 0, 8, "the band", "test")]
    ex = _extractor(tiny_text_encoder, tiny_image_encoder)
    # types: Person, Location, Organization; the first "paris" alone would be a Person
    raw = torch.tensor([[2.0, 1.5, 0.0], [0.0, 3.0, 0.0], [0.5, 2.5, 0.0], [0.0, 0.0, 2.0]])
    monkeypatch.setattr(ex, "_scores", lambda ckpt, items, emb: raw)
    typed = ex.type_mentions(posts, mentions, ONTOLOGY)
    assert [tm.entity_type for tm in typed] == ["Location", "Location", "Location", "Organization"]
    assert ex.stats["types_changed_to_agree"] == 1


def test_a_checkpoint_no_image_can_change_is_given_no_image(posts, tiny_text_encoder):
    """``MGVMoE.reads_images``: an image reaches a score only through ``proj_x``, so a model whose ``proj_x`` is all
    zero (the similarity prior's start, kept by heads trained at lr 0: the shipped relation checkpoint) or whose
    ``use_image`` is off (the typer, trained on no image) reads none. Its posts' images are then not encoded, the
    image encoder is never loaded, and every score is what it was with the images."""
    import dataclasses

    met, mre = _checkpoint("met", -float("inf"), "met-tiny"), _checkpoint("mre", -float("inf"), "mre-tiny")
    assert met.model.reads_images and mre.model.reads_images
    with_images = MGVMoEExtractor(met, mre, text_encoder=tiny_text_encoder, image_encoder=None, batch_size=2)
    met.config = dataclasses.replace(met.config, use_image=False)
    met.model.config = met.config
    with torch.no_grad():
        mre.model.proj_x.weight.zero_()
        mre.model.proj_x.bias.zero_()
    assert not met.model.reads_images and not mre.model.reads_images
    ex = MGVMoEExtractor(met, mre, text_encoder=tiny_text_encoder, image_encoder=None, batch_size=2)
    typed = ex.type_mentions(posts, _mentions(), ONTOLOGY)
    relations = ex.extract_relations(posts, typed, ONTOLOGY)
    assert ex.stats["images_encoded"] == 0 and ex.stats["images_failed"] == 0 and ex._image_encoder is None
    text_only = {k: dataclasses.replace(p, images=()) for k, p in posts.items()}
    blind = MGVMoEExtractor(met, mre, text_encoder=tiny_text_encoder, image_encoder=None, batch_size=2)
    assert torch.equal(ex.type_scores(posts, _mentions(), ONTOLOGY), blind.type_scores(text_only, _mentions(), ONTOLOGY))
    assert [(r.head.mention, r.tail.mention, r.relation, r.score) for r in relations] == [
        (r.head.mention, r.tail.mention, r.relation, r.score)
        for r in blind.extract_relations(text_only, blind.type_mentions(text_only, _mentions(), ONTOLOGY), ONTOLOGY)]
    assert with_images._reads_images == {"met": True, "mre": True}  # decided per checkpoint when the extractor is built
