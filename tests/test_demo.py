"""The demo's choice of extractors: the real pair only when both weights are there, else the debug pair, loudly."""
from __future__ import annotations

import logging
import shutil

from tests.conftest import require_shared
from demo.run import DEBUG, PRETRAINED, choose_extractors


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
    from demo.run import chance_levels

    levels = chance_levels(10, 28, 14)
    assert levels["avsc_clip_accuracy"] == 0.1 and levels["vadd_roc_auc"] == 0.5
    assert levels["vadd_f1_flag_everything"] == round(2 * 0.5 / 1.5, 4)  # precision 0.5, recall 1
