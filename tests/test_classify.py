"""Baseline stage 2 on the tiny debug store: training, metrics, persistence, fingerprint checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classify.data import load_clips
from classify.heads import HeadConfig
from classify.metrics import classification_metrics, clip_vote
from classify.persist import load_head, save_head
from classify.run import run_training
from classify.scaler import Standardiser
from classify.train import TrainConfig, train_head
from extract.store import EmbeddingStore
from extract.taxonomy import tau_taxonomy

REPO = Path(__file__).resolve().parent.parent


def test_clip_vote_majority_and_tie_break():
    probs = np.array([[[0.9, 0.1], [0.4, 0.6], [0.45, 0.55]],  # votes 1:2 -> class 1
                      [[0.9, 0.1], [0.4, 0.6], [0.0, 0.0]]])  # 1:1 tie, mean prob favours class 0
    mask = np.array([[True, True, True], [True, True, False]])
    assert clip_vote(probs, mask).tolist() == [1, 0]


def test_metrics_on_known_probabilities():
    probs = np.zeros((2, 2, 2))
    probs[0, :, 0] = 1.0
    probs[1, 0] = [0.0, 1.0]
    probs[1, 1] = [0.6, 0.4]  # clip 2: one vote each; the mean probability (0.3, 0.7) breaks the tie
    m = classification_metrics(probs, np.ones((2, 2), bool), np.array([0, 1]), ("a", "b"))
    assert m["second_accuracy"] == 0.75 and m["n_seconds"] == 4
    assert m["confusion_vote"] == [[1, 0], [0, 1]]
    assert m["per_class_clip_accuracy"]["a"] == 1.0


def test_confusion_text_keeps_whole_class_names():
    from classify.cli import format_confusion

    text = format_confusion([[1, 2], [3, 40]], ["street_pedestrian", "bus"])
    assert text.splitlines()[1].split() == ["street_pedestrian", "bus"]
    assert text.splitlines()[2].split() == ["street_pedestrian", "1", "2"]


@pytest.mark.parametrize("main_module", ["extract.cli", "classify.cli", "vadd.cli"])
def test_every_cli_prints_an_error_in_one_line(main_module, tmp_path, capsys):
    import importlib

    main = importlib.import_module(main_module).main
    args = {"extract.cli": ["info"], "classify.cli": ["train"], "vadd.cli": ["eval"]}[main_module]
    assert main([*args, "--store", str(tmp_path / "none.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: no store at {tmp_path / 'none.zarr'}")


def test_three_class_mapping():
    assert tau_taxonomy().class_set("3").encode(np.array(["bus", "park", "airport", ""])).tolist() == [2, 1, 0, -1]


def test_scaler_is_fitted_on_train_only(tiny_store, tmp_path):
    """Through the whole training run (store -> splits -> head): the scaler's statistics are the train split's."""
    store = EmbeddingStore.open(tiny_store)
    train = load_clips(store, ["debug_audio"], "train", 10)
    test = load_clips(store, ["debug_audio"], "test", 10)
    run_training(tiny_store, ["debug_audio"], 10, HeadConfig(kind="linear"), TrainConfig(epochs=1), tmp_path / "run")
    fitted = load_head(tmp_path / "run" / "model.pt").scaler
    train_values = train.features["debug_audio"][train.mask].astype(np.float64)
    all_values = np.concatenate([train_values, test.features["debug_audio"][test.mask].astype(np.float64)])
    assert not np.allclose(train_values.mean(0), all_values.mean(0), rtol=1e-3)  # a leak would be visible
    np.testing.assert_allclose(fitted.mean["debug_audio"], train_values.mean(0), rtol=1e-5)
    np.testing.assert_allclose(fitted.std["debug_audio"], train_values.std(0), rtol=1e-4)


def test_tiny_train_set_is_learned_and_persisted(tiny_store, tmp_path):
    store = EmbeddingStore.open(tiny_store)
    train = load_clips(store, ["debug_visual", "debug_audio"], "train", 10)
    head = train_head(train, HeadConfig(), TrainConfig(epochs=200, schedule="constant", seed=1))
    probs = head.predict_proba(train)
    assert classification_metrics(probs, train.mask, train.targets, train.classes)["clip_accuracy"] == 1.0
    save_head(tmp_path / "m.pt", head)
    again = load_head(tmp_path / "m.pt")
    np.testing.assert_allclose(again.predict_proba(train), probs, atol=1e-6)


def test_training_is_deterministic(tiny_store):
    store = EmbeddingStore.open(tiny_store)
    train = load_clips(store, ["debug_audio"], "train", 3)
    a = train_head(train, HeadConfig(), TrainConfig(epochs=3, seed=5)).predict_proba(train)
    b = train_head(train, HeadConfig(), TrainConfig(epochs=3, seed=5)).predict_proba(train)
    np.testing.assert_array_equal(a, b)


def test_head_refuses_other_fingerprints(tiny_store):
    store = EmbeddingStore.open(tiny_store)
    train = load_clips(store, ["debug_audio"], "train", 10)
    head = train_head(train, HeadConfig(), TrainConfig(epochs=1))
    train.fingerprints["debug_audio"] = "something-else"
    with pytest.raises(ValueError, match="fingerprint"):
        head.predict_proba(train)


def test_train_cli_writes_run_folder_and_prints_metrics_last(tiny_store, tmp_path):
    out = subprocess.run([sys.executable, "-m", "classify", "train", "--store", tiny_store, "--epochs", "5",
                          "--out", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"metrics: {tmp_path / 'run' / 'metrics.json'}"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_clips"] > 0 and 0 <= metrics["clip_accuracy"] <= 1
    for name in ("config.json", "model.pt", "predictions.csv", "confusion.png"):
        assert (tmp_path / "run" / name).exists()


def test_vadd_eval_cli_on_tiny_store(tiny_store, tmp_path):
    for classes, head in (("10", []), ("3", ["--head", "mlp", "--preset", "paper-text", "--epochs", "2"])):
        out = subprocess.run([sys.executable, "-m", "vadd", "eval", "--store", tiny_store, "--classes", classes,
                              *head, "--out", str(tmp_path / classes)], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == f"metrics: {tmp_path / classes / 'metrics.json'}"
        metrics = json.loads((tmp_path / classes / "metrics.json").read_text())
        assert metrics["n_items"] > 0 and metrics["n_manipulated"] * 2 == metrics["n_items"]
    config = {c: json.loads((tmp_path / c / "config.json").read_text()) for c in ("10", "3")}
    assert config["10"]["head"]["kind"] == "ls" and config["10"]["train"]["optimizer"] == "adam"  # the paper's LS
    assert config["3"]["head"]["kind"] == "mlp" and config["3"]["train"]["optimizer"] == "sgd"
    assert config["3"]["train"]["epochs"] == 2


def test_standardiser_round_trip():
    s = Standardiser({"a": np.arange(3.0)}, {"a": np.ones(3)})
    again = Standardiser.from_arrays(s.to_arrays())
    np.testing.assert_array_equal(again.mean["a"], s.mean["a"])


class _Terminal(__import__("io").StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("enabled", [True, False])
def test_training_shows_epochs_and_loss_on_a_terminal_only(tiny_store, monkeypatch, enabled):
    store = EmbeddingStore.open(tiny_store)
    train = load_clips(store, ["debug_audio"], "train", 10)
    train_head(train, HeadConfig(), TrainConfig(epochs=2), progress=enabled)  # not a terminal: no bar
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train_head(train, HeadConfig(), TrainConfig(epochs=2), progress=enabled)
    shown = terminal.getvalue()
    assert (("train mlp" in shown and "/2 [" in shown and "loss=" in shown) if enabled else shown == "")


def test_predict_reads_the_store_recorded_in_the_run(tiny_store, tmp_path, monkeypatch, capsys):
    from classify.cli import main

    run_training(tiny_store, ["debug_visual", "debug_audio"], "", HeadConfig(kind="ls"), TrainConfig(epochs=1),
                 tmp_path / "run")
    monkeypatch.chdir(tmp_path)  # no cache/embeddings.zarr here
    assert main(["predict", "--model", str(tmp_path / "run" / "model.pt"), "--out", str(tmp_path / "pred.csv")]) == 0
    assert f"store: {tiny_store} (recorded in the run)" in capsys.readouterr().out
    n_test = len(load_clips(EmbeddingStore.open(tiny_store), ["debug_visual", "debug_audio"], "test"))
    assert len((tmp_path / "pred.csv").read_text().splitlines()) == 1 + n_test


def test_an_absent_default_store_names_the_stores_that_exist(tiny_store, tmp_path, monkeypatch, capsys):
    import shutil

    from classify.cli import main

    cache = tmp_path / "cache"
    shutil.copytree(tiny_store, cache / "demo" / "embeddings.zarr")
    monkeypatch.setattr("extract.store.reader.cache_dir", lambda: cache)
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no store at cache/embeddings.zarr") and str(cache / "demo" / "embeddings.zarr") in err
    shutil.rmtree(cache / "demo")
    assert main(["train"]) == 2
    assert f"no store exists under {cache}" in capsys.readouterr().err
