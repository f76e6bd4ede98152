"""The command-line entry points on the real packaged encoders (opt-in: ``pytest -m slow``)."""

from __future__ import annotations

import pytest

from mmkg.settings import research_data_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(research_data_dir() is None, reason="research data absent: set MMKG_DATA to shared/data"),
]


def test_train_dry_run_stops_after_one_batch(capsys):
    from models.train import main

    assert main(["--split", "wnut16-fold1", "--dry-run", "--no-progress"]) == 0
    assert '"best_epoch": 1' in capsys.readouterr().out


def test_shipped_checkpoints_load_offline_and_evaluate(capsys):
    from models.checkpoint import DEFAULT_ENTITY_CHECKPOINT, DEFAULT_RELATION_CHECKPOINT
    from models.evaluate import main

    assert main([str(DEFAULT_RELATION_CHECKPOINT), "--split", "mnre", "--part", "val", "--dry-run"]) == 0
    assert main([str(DEFAULT_ENTITY_CHECKPOINT), "--split", "wnut16-fold3", "--part", "train", "--dry-run"]) == 0
    assert "macro_f1" in capsys.readouterr().out


def test_extractor_on_a_real_post():
    from extraction.mg_vmoe import MGVMoEExtractor
    from mmkg.ontology import load_ontology
    from mmkg.records import Mention, Post
    from mmkg.settings import REPO_ROOT

    ontology = load_ontology(REPO_ROOT / "ontology" / "ontology.yaml")
    text = "Lionel Messi scored twice for Inter Miami in Florida last night"
    post = Post("p", text, "2024-01-01T00:00:00Z")
    mentions = [Mention("p", 0, 12, "Lionel Messi", "t"), Mention("p", 30, 41, "Inter Miami", "t"),
                Mention("p", 45, 52, "Florida", "t")]
    ex = MGVMoEExtractor()
    typed = ex.type_mentions({"p": post}, mentions, ontology)
    assert len(typed) == 3
    ex.extract_relations({"p": post}, typed, ontology)  # runs; content depends on the typing


def test_benchmark_harness_dry_run(tmp_path, capsys):
    from bench.zero_shot.run import main

    assert main(["--dry-run", "--splits", "wnut16-fold1", "--systems", "MG-VMoE, shipped preset", "shipped - VMoE",
                 "--out", str(tmp_path)]) == 0
    assert "dry run OK" in capsys.readouterr().out
