"""The demo: its choice of extractors (the real pair only when both weights are there, else the debug pair, loudly) and its report."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.conftest import require_shared
from avscene.demo.run import DEBUG, PRETRAINED, chance_levels, choose_extractors


def test_demo_uses_the_real_pair_when_the_shared_weights_are_there(monkeypatch):
    monkeypatch.setenv("AVSCENE_SHARED", str(require_shared("weights").parent))
    assert choose_extractors() == PRETRAINED


def test_demo_falls_back_loudly_when_a_weights_file_is_missing(tmp_path, monkeypatch, caplog):
    weights = tmp_path / "shared" / "weights"
    weights.mkdir(parents=True)
    shutil.copy(require_shared("weights", "mobilenet_v2-b0353104.pth"), weights)  # EfficientAT's file is absent
    monkeypatch.setenv("AVSCENE_SHARED", str(tmp_path / "shared"))
    with caplog.at_level(logging.WARNING):
        assert choose_extractors() == DEBUG
    assert "efficientat_mn04.audioset (mn04_as_mAP_432.pt)" in caplog.text and "DEBUG extractors" in caplog.text


def test_chance_levels_of_the_demo_report():
    levels = chance_levels(10, 28, 14)
    assert levels["clip_accuracy"] == 0.1 and levels["vadd_roc_auc"] == 0.5
    assert levels["vadd_f1_flag_everything"] == round(2 * 0.5 / 1.5, 4)  # precision 0.5, recall 1
    assert (levels["vadd_precision_flag_everything"], levels["vadd_recall_flag_everything"]) == (0.5, 1.0)
    assert chance_levels(3, 10, 7)["vadd_accuracy_majority"] == 0.7 and chance_levels(3, 10, 7)["clip_accuracy"] == 0.3333


@pytest.mark.slow
def test_demo_report_states_its_figures_chance_levels_and_data(tmp_path, monkeypatch):
    """`make demo` end to end on a smaller dataset (the debug extractors: no shared weights here)."""
    import json

    from avscene.demo.run import run_demo
    from vadd.page import report_data

    monkeypatch.setenv("AVSCENE_SHARED", str(tmp_path / "no-shared"))
    report = json.loads(run_demo(tmp_path / "demo", clips_per_scene=5, seconds=2, device="cpu").read_text())
    assert report["extractors"] == list(DEBUG) and report["n_classes"] == 10
    assert report["data"]["synthetic"] is True and report["data"]["folder"] == str(tmp_path / "demo" / "data")
    assert report["avsc"]["n_train_clips"] + report["avsc"]["n_test_clips"] == report["data"]["n_clips"] == 50
    vadd = report["vadd"]
    assert vadd["n_items"] == 2 * vadd["n_manipulated"] > 0 and 0.0 <= vadd["roc_auc"] <= 1.0
    metrics = json.loads((tmp_path / "demo" / "runs" / "vadd-10cls" / "metrics.json").read_text())
    assert vadd["verdict_rule"]["f1"] == metrics["mismatch_score"]["f1"]  # the rule `vadd check` decides by
    assert report["chance"] == chance_levels(10, vadd["n_items"], vadd["n_manipulated"])
    assert all((tmp_path / "demo" / "runs" / name / "metrics.json").is_file() for name in ("avsc-10cls", "vadd-10cls"))
    page = report_data(Path(report["check_report"]).read_text())  # the test clips checked (no shared bento.mp4 here)
    assert len(page["videos"]) == report["avsc"]["n_test_clips"] and page["heads"]["synthetic_dataset"] is True
    assert report["why_avsc_differs_from_vadd_vasc"].startswith(
        f"different training clips: avsc's head trains on all {report['avsc']['n_train_clips']} train clips")
