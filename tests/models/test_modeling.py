"""MG-VMoE heads on tiny configs: shapes, loss terms, gradients, MG-VAT, the no-image path, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import MGVMoEConfig
from models.modeling import MGVMoE, adversary_step, marked_text, seed_everything, training_step, words_to_text
from tests.models.conftest import random_batch


@pytest.mark.parametrize("task", ["met", "mre"])
def test_shapes_and_every_loss_term_finite(task):
    config = MGVMoEConfig.tiny(task)
    model = MGVMoE(config).train()
    batch, class_emb = random_batch(config)
    out = model(batch, class_emb)
    assert out.scores.shape == (6, 4)
    assert out.nodes.shape == (6, 2 * config.vmoe_dim)
    assert set(out.losses) == {"rank", "fit", "vmoe_kl", "vmoe_entropy", "vmoe", "infonce", "vat"}
    for name, value in out.losses.items():
        assert torch.isfinite(value), name
    assert out.losses["infonce"] > 0 and out.losses["vmoe_kl"] > 0 and out.losses["rank"] > 0
    assert torch.isfinite(out.loss)


def _grad_of(config, term: str, param: str) -> torch.Tensor:
    model = MGVMoE(config).train()
    batch, class_emb = random_batch(config)
    out = model(batch, class_emb)
    model.zero_grad()
    out.losses[term].backward()
    grad = dict(model.named_parameters())[param].grad
    return torch.zeros(1) if grad is None else grad


@pytest.mark.parametrize(
    "term,param",
    [("rank", "proj_x.weight"), ("rank", "proj_c.weight"), ("rank", "vmoe.mu.weight"),
     ("vmoe_kl", "vmoe.mu.weight"), ("vmoe_entropy", "vmoe.gate.weight"),
     ("infonce", "image_in.weight"), ("vat", "vmoe.mu.weight")],
)
def test_each_loss_term_reaches_the_parameters_it_should(term, param):
    torch.manual_seed(0)
    assert _grad_of(MGVMoEConfig.tiny(), term, param).abs().sum() > 0


def test_free_bits_stop_the_kl_pressure_below_them_and_vat_weight_scales_l_vat():
    torch.manual_seed(0)
    config = MGVMoEConfig.tiny(beta=1.0)
    kl = float(MGVMoE(config).train()(*random_batch(config)).losses["vmoe_kl"].detach())
    for free_bits, pressed in ((0.0, True), (kl / 2, True), (kl * 2, False)):
        torch.manual_seed(0)
        model = MGVMoE(config.replace(kl_free_bits=free_bits)).train()
        out = model(*random_batch(config))
        model.zero_grad()
        out.losses["vmoe"].backward()
        # the entropy term reaches only the gate; the mean/variance heads feel the KL alone
        grad = model.vmoe.mu.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == pressed, free_bits
        assert float(out.losses["vmoe_kl"].detach()) == pytest.approx(kl)  # the raw KL is what is logged
    torch.manual_seed(0)
    base = MGVMoE(config).train()
    out = base(*random_batch(config))
    torch.manual_seed(0)
    weighted = MGVMoE(config.replace(vat_weight=10.0)).train()
    out10 = weighted(*random_batch(config))
    vat = float(out.losses["vat"].detach())
    assert vat > 0 and float((out10.loss - out.loss).detach()) == pytest.approx(9.0 * vat, rel=1e-4)


def test_rank_loss_does_not_train_the_perturbation():
    torch.manual_seed(0)
    assert _grad_of(MGVMoEConfig.tiny(), "rank", "vat.r").abs().sum() == 0


def test_adversarial_step_increases_the_kl_it_targets():
    config = MGVMoEConfig.tiny(vat_lr=0.05, vat_r_penalty=0.0)
    torch.manual_seed(0)
    model = MGVMoE(config).train()
    batch, class_emb = random_batch(config, b=8, with_images=4)
    nodes = model(batch, class_emb).nodes.detach()
    r_opt = torch.optim.Adam([model.vat.r], lr=config.vat_lr)
    before = float(model.vat.kl(nodes).detach())
    for _ in range(5):
        adversary_step(model, nodes, r_opt)
    assert float(model.vat.kl(nodes)) > before


def test_training_step_updates_heads_and_r_separately():
    config = MGVMoEConfig.tiny()
    torch.manual_seed(0)
    model = MGVMoE(config)
    batch, class_emb = random_batch(config)
    opt = torch.optim.Adam(model.head_parameters(), lr=1e-2)
    r_opt = torch.optim.Adam([model.vat.r], lr=1e-2)
    r0, w0 = model.vat.r.detach().clone(), model.proj_x.weight.detach().clone()
    terms = training_step(model, batch, class_emb, opt, r_opt)
    assert terms["vat"] > 0 and all(v == v for v in terms.values())
    assert not torch.equal(r0, model.vat.r) and not torch.equal(w0, model.proj_x.weight)
    assert all(p is not model.vat.r for p in model.head_parameters())


def test_posts_without_image_ignore_image_tensor_and_batches_without_any_image_work():
    config = MGVMoEConfig.tiny()
    model = MGVMoE(config).eval()
    batch, class_emb = random_batch(config, with_images=2)
    s1 = model(batch, class_emb).scores
    noisy = dataclasses.replace(batch, image_tokens=batch.image_tokens.clone())
    noisy.image_tokens[2:] = 1e3  # rows whose post has no image: must not matter
    s2 = model(noisy, class_emb).scores
    assert torch.allclose(s1[2:], s2[2:]) and torch.allclose(s1[:2], s2[:2])
    none = dataclasses.replace(batch, image_tokens=torch.zeros(6, 0, config.image_hidden),
                               has_image=torch.zeros(6, dtype=torch.bool))
    out = model.train()(none, class_emb)
    assert out.losses["infonce"] == 0 and torch.isfinite(out.loss)
    # a post without an image scores the same whether or not its batch-mates have images
    model.eval()
    assert torch.allclose(model(none, class_emb).scores[2:], s1[2:], atol=1e-5)


@pytest.mark.parametrize("changes", [dict(use_vmoe=False), dict(fusion="concat"), dict(fusion="none"),
                                     dict(use_vat=False, use_infonce=False), dict(use_image=False)])
def test_ablation_configs_run(changes):
    config = MGVMoEConfig.tiny(**changes)
    model = MGVMoE(config)
    batch, class_emb = random_batch(config)
    opt = torch.optim.Adam(model.head_parameters(), lr=1e-2)
    terms = training_step(model, batch, class_emb, opt, torch.optim.Adam([model.vat.r]))
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())


def test_inference_uses_mu_and_is_deterministic_training_samples():
    config = MGVMoEConfig.tiny()
    model = MGVMoE(config)
    batch, class_emb = random_batch(config)
    model.eval()
    assert torch.equal(model(batch, class_emb).scores, model(batch, class_emb).scores)
    assert not torch.equal(model(batch, class_emb, sample=True).scores, model(batch, class_emb, sample=True).scores)


def test_determinism_under_a_seed():
    def run():
        config = MGVMoEConfig.tiny()
        seed_everything(3)
        model = MGVMoE(config)
        batch, class_emb = random_batch(config)
        opt = torch.optim.Adam(model.head_parameters(), lr=1e-2)
        r_opt = torch.optim.Adam([model.vat.r], lr=1e-2)
        for _ in range(3):
            training_step(model, batch, class_emb, opt, r_opt)
        return model.eval()(batch, class_emb).scores

    assert torch.equal(run(), run())


def test_marked_text_for_both_tasks():
    text, spans = words_to_text(("Obama", "was", "born", "in", "Hawaii"), ((0, 1), (4, 5)))
    assert marked_text(text, spans, "mre") == "<h> Obama </h> was born in <t> Hawaii </t>"
    assert marked_text("I love New York", [(7, 15)], "met") == "I love <e> New York </e>"
    # touching spans: closing marker of one comes before the opening marker of the next
    assert marked_text("ab", [(0, 1), (1, 2)], "mre") == "<h> a </h> <t> b </t>"
    with pytest.raises(ValueError):
        marked_text("x", [(0, 1)], "mre")


def test_text_encoder_adds_markers_and_finds_them(tiny_text_encoder):
    enc = tiny_text_encoder
    ids = enc.tokenizer("the <h> band </h> played in <t> paris </t>")["input_ids"]
    assert enc.marker_ids["<h>"] in ids and enc.marker_ids["<t>"] in ids
    feats = enc(["the <h> band </h> played in <t> paris </t>", "<h> red </h> <t> car </t>"], "mre")
    # each entity is its start marker's one token
    assert feats.tokens.shape[-1] == 32 and feats.span_bounds.tolist() == [[[2, 3], [7, 8]], [[1, 2], [4, 5]]]
    assert feats.truncated_spans == 0
    assert enc.embed_labels(["band", "born in city"]).shape == (2, 32)


def test_plain_text_spans_map_to_their_word_pieces(tiny_text_encoder):
    enc = tiny_text_encoder
    text = "the band played in paris last night"
    feats = enc.encode_spans([text, "red car"], [[(4, 8), (19, 24)], [(0, 3), (4, 7)]])
    # [CLS] the band played in paris ...: "band" is token 2, "paris" token 5; no markers in the text
    assert feats.span_bounds.tolist() == [[[2, 3], [5, 6]], [[1, 2], [2, 3]]]
    assert feats.truncated_spans == 0
    assert not set(enc.marker_ids.values()) & set(enc.tokenizer(text)["input_ids"])
    # a span cut off by max_length falls back to [CLS] and is counted, never silently dropped
    long_text = " ".join(["the"] * 40) + " paris"
    feats = enc.encode_spans([long_text], [[(len(long_text) - 5, len(long_text)), (0, 3)]])
    assert feats.span_bounds[0, 0].tolist() == [0, 1] and feats.truncated_spans == 1


def test_token_span_ignores_special_tokens_and_covers_partial_overlap():
    from models.modeling import token_span

    offsets = torch.tensor([[0, 0], [0, 3], [4, 8], [8, 10], [0, 0], [0, 0]])  # [CLS] the band ##s [SEP] [PAD]
    assert token_span(offsets, 4, 10) == (2, 4)
    assert token_span(offsets, 5, 6) == (2, 3)
    assert token_span(offsets, 20, 25) is None


def test_image_encoder_gives_region_tokens(tiny_image_encoder):
    from PIL import Image

    pixels = tiny_image_encoder.preprocess([Image.new("RGB", (50, 40), (255, 0, 0))])
    assert pixels.shape == (1, 3, 32, 32) and pixels.max() == 1.0
    assert tiny_image_encoder(pixels).shape == (1, 16, 24)


def test_similarity_prior_starts_exactly_at_label_similarity():
    import torch.nn.functional as F

    from models.modeling import masked_mean

    config = MGVMoEConfig.tiny(similarity_prior=10.0)
    model = MGVMoE(config).eval()
    batch, class_emb = random_batch(config)
    expected = 10.0 * F.normalize(masked_mean(batch.text_tokens, batch.text_mask), dim=-1) @ \
        F.normalize(class_emb, dim=-1).t()
    assert torch.allclose(model(batch, class_emb).scores, expected, atol=1e-5)


def test_entity_prior_compares_the_mention_span_with_the_labels():
    import torch.nn.functional as F

    from models.modeling import span_mean

    config = MGVMoEConfig.tiny("met", similarity_prior=10.0, text_input="spans", prior_pool="entities")
    model = MGVMoE(config).eval()
    batch, class_emb = random_batch(config)
    mention = span_mean(batch.text_tokens, batch.span_bounds[:, 0])
    expected = 10.0 * F.normalize(mention, dim=-1) @ F.normalize(class_emb, dim=-1).t()
    assert torch.allclose(model(batch, class_emb).scores, expected, atol=1e-5)
    with pytest.raises(ValueError, match="text_input='spans'"):
        MGVMoEConfig.tiny("met", prior_pool="entities")
