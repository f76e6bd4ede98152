"""The zero-shot benchmark's nested selection: a choice reads validation scores only, per instance and seed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.zero_shot import run as bench


def _candidate(changes: dict, val: float, test: float) -> dict:
    return {"changes": changes, "val_selection": val, "selection_metric": "macro_f1", "best_epoch": 1,
            "val": {"macro_f1": val}, "test": {"macro_f1": test}, "history": [], "seconds": 1.0,
            "inference_mode_check": {}, "test_pred": []}


def test_the_kept_candidate_is_the_validation_best_whatever_its_test_score(monkeypatch):
    # Candidate lr=1e-3 is best on test, lr=1e-4 on validation: the harness must keep 1e-4.
    scores = {1e-4: (60.0, 40.0), 1e-3: (50.0, 70.0)}
    monkeypatch.setattr(bench, "train_candidate",
                        lambda system, data, seed, c, dry: _candidate(c, *scores[c["lr"]]))
    system = bench.System("s", "shipped", grid=({"lr": 1e-3}, {"lr": 1e-4}))
    chosen: dict = {}
    run = bench.run_system(system, data=SimpleNamespace(split=SimpleNamespace(task="met")), seed=0, chosen=chosen, dry_run=False)
    assert run["chosen"] == {"lr": 1e-4} and run["test"]["macro_f1"] == 40.0
    assert chosen == {"s": {"lr": 1e-4}}
    assert [c["test_macro_f1"] for c in run["candidates"]] == [70.0, 40.0]  # reported beside, never used


def test_a_tie_on_validation_keeps_the_first_candidate_in_grid_order():
    assert bench.choose([{"val_selection": 5.0}, {"val_selection": 5.0}, {"val_selection": 4.0}]) == 0
    assert bench.choose([{"val_selection": 1.0}, {"val_selection": 5.0}]) == 1


def test_an_ablation_takes_the_shipped_presets_choice_of_the_same_instance_and_seed(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "train_candidate",
                        lambda system, data, seed, c, dry: seen.append((system.name, c)) or _candidate(c, 1.0, 1.0))
    ablation = bench.BY_NAME["shipped - VMoE"]
    run = bench.run_system(ablation, None, 0, {bench.SHIPPED: {"lr": 1e-3, "argument_input": "span"}}, False)
    assert seen == [("shipped - VMoE", {"lr": 1e-3, "argument_input": "span"})]
    assert ablation.config("mre", 0, run["chosen"]).use_vmoe is False
    assert ablation.config("mre", 0, run["chosen"]).argument_input == "span"


@pytest.mark.parametrize("system, its_twin", [(bench.SHIPPED, bench.TWIN), (bench.TUNED, bench.TUNED_TWIN)])
def test_a_twin_is_its_system_minus_image_and_vmoe_only(system, its_twin):
    shipped, twin = bench.BY_NAME[system], bench.BY_NAME[its_twin]
    for task in ("met", "mre"):
        assert shipped.candidates(task) == twin.candidates(task)
        for c in shipped.candidates(task):
            a, b = shipped.config(task, 0, c).to_dict(), twin.config(task, 0, c).to_dict()
            assert {k for k in a if a[k] != b[k]} == {"use_image", "use_vmoe"}


def test_the_tuned_systems_train_as_the_shipped_checkpoint_of_each_task():
    from models.config import MGVMoEConfig
    from bench.zero_shot import relations

    tuned, twin = bench.BY_NAME[bench.TUNED], bench.BY_NAME[bench.TUNED_TWIN]
    for task in ("met", "mre"):
        for c in tuned.candidates(task):
            a = tuned.config(task, 0, c).to_dict()
            shipped = MGVMoEConfig.for_shipping(task, **c).to_dict()
            # as shipped, but relations keep the benchmark's pooled calibration (its test mix is pooled)
            assert {k for k in a if a[k] != shipped[k]} == ({"calibrate_on"} if task == "mre" else set())
    assert tuned.config("mre", 0, {}).lr == 0.0  # the relation heads stay at their priors: no lr candidates
    # the None-protocol benchmark's twin is the same pair of configs
    r_tuned, _ = relations.SYSTEMS[relations.TUNED_NAME]
    r_twin, _ = relations.SYSTEMS[relations.TUNED_TWIN_NAME]
    assert MGVMoEConfig.for_pipeline("mre", **r_tuned) == tuned.config("mre", 0, {})
    assert MGVMoEConfig.for_pipeline("mre", **r_twin) == twin.config("mre", 0, {})


def test_an_aggregate_is_the_mean_over_its_instances_with_the_spread_over_instances():
    def runs(f1s):
        return [{"test": {"macro_p": 0.0, "macro_r": 0.0, "macro_f1": f, "accuracy": 0.0}} for f in f1s]

    results = {"runs": {"s": {"wnut16-fold1": runs([10.0, 20.0]), "wnut16-fold2": runs([30.0, 40.0]),
                              "wnut16-fold3": runs([50.0, 60.0]), "mnre-seed0": runs([1.0, 2.0])}}}
    table = bench.summarise(results)
    assert table["s"]["wnut16-fold1"]["macro_f1"] == pytest.approx((15.0, 7.0710678))  # over training seeds
    mean, std = table["s"]["wnut16 (3 folds)"]["macro_f1"]
    assert mean == pytest.approx(35.0) and std == pytest.approx(20.0)  # instance means 15, 35, 55
    assert "mnre (5 split seeds)" not in table["s"]  # an aggregate needs every one of its instances


def test_a_shipped_checkpoint_is_the_validation_best_of_the_pipeline_candidates(monkeypatch):
    from models import train as training
    from models.config import PIPELINE_CANDIDATES, MGVMoEConfig

    val = {1e-4: 50.0, 1e-3: 61.0}  # entities/text pooling tie; lr 1e-3 wins on validation
    trained = []

    def fake_train(config, data, progress=True, dry_run=False):
        trained.append((config.prior_pool, config.lr))
        return SimpleNamespace(best_epoch=1, history=[{"val_selection": 0.0}, {"val_selection": val[config.lr]}],
                               config=config)

    monkeypatch.setattr(training, "train", fake_train)
    result, selection = training.select(MGVMoEConfig.for_pipeline("met"), data=None, progress=False)
    assert len(trained) == len(PIPELINE_CANDIDATES["met"])
    assert (result.config.prior_pool, result.config.lr) == ("entities", 1e-3)  # first of the tied best
    assert selection["kept"] == {"prior_pool": "entities", "lr": 1e-3}
    assert [c["val_selection"] for c in selection["candidates"]] == [50.0, 61.0, 50.0, 61.0]


def test_the_training_command_shows_test_scores_only_when_asked():
    from models.train import TEST_HIDDEN, run_summary

    result = SimpleNamespace(best_epoch=2, val={"macro_f1": 60.0}, test={"macro_f1": 70.0}, thresholds={},
                             inference_mode_check={}, seconds=1.0)
    assert run_summary("wnut16-fold1", result)["test"] == TEST_HIDDEN
    assert "70.0" not in str(run_summary("wnut16-fold1", result))
    assert run_summary("wnut16-fold1", result, report_test=True)["test"] == {"macro_f1": 70.0}


@pytest.mark.parametrize("ablation, field", [("tuned - VMoE", "use_vmoe"), ("tuned - MG-VAT", "use_vat"),
                                             ("tuned - fusion (no attention pooling, so no MG-VAT/InfoNCE)", "fusion"),
                                             ("tuned - image", "use_image")])
def test_each_ablation_of_the_tuned_system_removes_one_part_of_its_chosen_candidate(ablation, field):
    tuned, ablated = bench.BY_NAME[bench.TUNED], bench.BY_NAME[ablation]
    assert ablated.ablation_of == bench.TUNED
    for task in ("met", "mre"):
        for c in tuned.candidates(task):
            a, b = tuned.config(task, 0, c).to_dict(), ablated.config(task, 0, c).to_dict()
            assert {k for k in a if a[k] != b[k]} == {field}


def test_a_reused_system_is_not_trained_again_and_its_kept_candidate_feeds_its_ablations(monkeypatch, tmp_path):
    import json

    earlier = {**_candidate({"prior_pool": "text", "lr": 1e-3}, 58.0, 31.0), "seed": 0,
               "chosen": {"prior_pool": "text", "lr": 1e-3}}
    (tmp_path / "results.json").write_text(json.dumps({"runs": {bench.TUNED: {"wnut16-fold2": [earlier]}}}))
    reused = bench.reused_runs([str(tmp_path)])
    trained = []
    monkeypatch.setattr(bench, "train_candidate",
                        lambda system, data, seed, c, dry: trained.append((system.name, c)) or _candidate(c, 1.0, 1.0))
    data = SimpleNamespace(split=SimpleNamespace(task="met"))
    chosen: dict = {}
    run = bench.run_or_reuse(bench.BY_NAME[bench.TUNED], data, "wnut16-fold2", 0, chosen, False, reused)
    assert run is reused[bench.TUNED]["wnut16-fold2"][0] and trained == []
    bench.run_or_reuse(bench.BY_NAME["tuned - VMoE"], data, "wnut16-fold2", 0, chosen, False, reused)
    assert trained == [("tuned - VMoE", {"prior_pool": "text", "lr": 1e-3})]
    # another instance or seed is trained as usual
    bench.run_or_reuse(bench.BY_NAME[bench.TUNED], data, "wnut16-fold1", 0, chosen, False, reused)
    assert len(trained) == 1 + len(bench.BY_NAME[bench.TUNED].candidates("met"))
    with pytest.raises(SystemExit, match="two --reuse folders"):
        bench.reused_runs([str(tmp_path), str(tmp_path)])


@pytest.mark.parametrize("frozen", ["MG-VMoE as specified (reference)", "text-only prototype (ZS-BERT style)",
                                    "concat multimodal"])
def test_each_tuned_baseline_is_its_frozen_baseline_with_the_tuned_encoder_layer_over_spans(frozen):
    base, tuned = bench.BY_NAME[frozen], bench.BY_NAME[f"{frozen}, spans, top encoder layer fine-tuned"]
    assert base.candidates("met") == tuned.candidates("met") and tuned.role == base.role
    for task in ("met", "mre"):
        for c in base.candidates(task):
            a, b = base.config(task, 0, c).to_dict(), tuned.config(task, 0, c).to_dict()
            assert {k for k in a if a[k] != b[k]} == {"tuned_layers", "tuned_lr", "text_input"}
            assert b["tuned_layers"] == 1 and b["text_input"] == "spans"
