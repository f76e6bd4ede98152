"""Fine-tuned top encoder layers (``MGVMoEConfig.tuned_layers``): an untrained copy is the frozen encoder, the
role embeddings make the reading pair- and direction-specific, training reaches them at their own step size,
and the pipeline reads them from the same one pass per post."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from extraction.mg_vmoe import MGVMoEExtractor
from models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from models.config import MGVMoEConfig
from models.modeling import MGVMoE, MGVMoEBatch, TunedLayers
from tests.models.conftest import random_batch
from mmkg.records import TypedMention
from tests.models.test_extractor import ONTOLOGY, _checkpoint, _mentions, posts  # noqa: F401  (fixture)

TEXTS = ["the band played in paris last night", "star won award"]


def _tuned(tiny_text_encoder, **changes) -> MGVMoE:
    torch.manual_seed(0)
    config = MGVMoEConfig.tiny("mre", text_input="spans", label_text="description", tuned_layers=1, **changes)
    model = MGVMoE(config).eval()
    model.tuned.copy_from(tiny_text_encoder)
    return model


def test_an_untrained_tuned_copy_gives_exactly_the_frozen_encoders_output(tiny_text_encoder):
    states, mask, _ = tiny_text_encoder.encode_depths(TEXTS, (0, 1))
    layers = TunedLayers(MGVMoEConfig.tiny("mre", text_input="spans", tuned_layers=1)).eval()
    layers.copy_from(tiny_text_encoder)
    with torch.no_grad():
        out = layers(states[1], mask, torch.tensor([[[1, 2], [5, 6]], [[0, 1], [2, 3]]]))
    assert not torch.allclose(states[1][mask], states[0][mask])  # depth 1 is one layer below the top
    assert torch.allclose(out[mask], states[0][mask], atol=1e-5)


def test_role_embeddings_make_the_reading_depend_on_the_pair_and_its_direction(tiny_text_encoder):
    model = _tuned(tiny_text_encoder)
    with torch.no_grad():
        model.tuned.roles.normal_()
    states, mask, _ = tiny_text_encoder.encode_depths(TEXTS[:1], (1,))
    bounds = torch.tensor([[[1, 2], [5, 6]]])
    batch = lambda b: MGVMoEBatch(states[1], mask, b, torch.zeros(1, 0, 24), torch.zeros(1, dtype=torch.bool))  # noqa: E731
    emb = torch.randn(3, 3, 32)
    with torch.no_grad():
        forward, backward = model(batch(bounds), emb).scores, model(batch(bounds.flip(1)), emb).scores
    assert not torch.allclose(forward, backward)


def test_training_reaches_the_tuned_layers_and_roles_at_their_own_step_size(tiny_text_encoder):
    model = _tuned(tiny_text_encoder, tuned_lr=1e-5, lr=1e-3).train()
    groups = model.parameter_groups()
    assert [g.get("lr") for g in groups] == [None, 1e-5]
    tuned = {id(p) for p in model.tuned.parameters()}
    assert {id(p) for p in groups[1]["params"]} == tuned and not tuned & {id(p) for p in groups[0]["params"]}
    batch, class_emb = random_batch(model.config)
    model(batch, torch.stack([class_emb] * 3, 1)).losses["rank"].backward()
    assert model.tuned.roles.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.tuned.layers.parameters() if p.requires_grad)


def test_a_tuned_checkpoint_round_trips_and_the_pipeline_encodes_each_post_once(tmp_path, posts, tiny_text_encoder,  # noqa: F811
                                                                               tiny_image_encoder):
    model = _tuned(tiny_text_encoder)
    with torch.no_grad():
        model.tuned.roles.normal_()
    card = {"name": "mre-tuned", "thresholds": {"min_score": -float("inf")}}
    saved = save_checkpoint(tmp_path / "mre-tuned", model, torch.zeros(6, 32), card)
    stored = load_file(str(saved / "heads.safetensors"))
    assert {v.dtype for k, v in stored.items() if k.startswith("heads.tuned.")} == {torch.float16}
    assert stored["heads.proj_c.weight"].dtype == torch.float32  # only the encoder layers are stored halved
    loaded = load_checkpoint(saved)
    assert loaded.config.tuned_layers == 1
    assert not torch.equal(model.tuned.roles, loaded.model.tuned.roles)  # float32 values rounded on the way
    model.tuned.round_to_storage()  # what training does before it scores and calibrates the kept epoch
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()))
    ex = MGVMoEExtractor(_checkpoint("met", -float("inf"), "met-tiny"), loaded, text_encoder=tiny_text_encoder,
                         image_encoder=tiny_image_encoder, batch_size=2)
    mentions = _mentions()
    ex.type_mentions(posts, mentions, ONTOLOGY)
    kinds = ["Organization", "Location", "Person", "Location", "Person"]
    typed = [TypedMention(m, kind, 0.9, "x", "y") for m, kind in zip(mentions, kinds)]
    relations = ex.extract_relations(posts, typed, ONTOLOGY)
    assert relations and ex.stats["posts_encoded"] == 3  # typing and relations share each post's one pass
    # the pipeline's pair scores are the model's own on the states one layer below the top
    item = [(posts["p3"], [(4, 8), (24, 29)])]  # "band", "album"; p3 has no image
    with torch.inference_mode():
        piped = ex._scores(ex.mre, item, ex._label_embeddings(ONTOLOGY, "relation", ex.mre))
        states, mask, _ = tiny_text_encoder.encode_depths([posts["p3"].text], (1,))
        direct = loaded.model(MGVMoEBatch(states[1], mask, torch.tensor([[[2, 3], [6, 7]]]), torch.zeros(1, 0, 24),
                                          torch.zeros(1, dtype=torch.bool)),
                              ex._label_embeddings(ONTOLOGY, "relation", ex.mre)).scores
    assert torch.allclose(piped, direct, atol=1e-5)


def test_tuned_layers_need_the_posts_encoded_once():
    with pytest.raises(ValueError, match="tuned_layers"):
        MGVMoEConfig.tiny("mre", text_input="markers", tuned_layers=1)

