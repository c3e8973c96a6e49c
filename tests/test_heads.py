"""The head family (#4): shapes and masking of every variant, batch invariance, presets, mixup, views, ablation."""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from classify.kinds import PRESET_CHOICES
from classify.data import ClipSet, augmented_views, load_clips
from classify.heads import ATTENTION_KINDS, HEAD_KINDS, FusionHead, HeadConfig, HeadInput
from classify.metrics import classification_metrics
from classify.persist import load_head
from classify.run import grouped_probs, load_views, run_training
from classify.train import PRESETS, TrainConfig, mixup, preset, single_seconds, train_head
from extract.store import DONE, EmbeddingStore
from extract.store.writer import BlockResult, StoreWriter
from extract.taxonomy import tau_taxonomy

REPO = Path(__file__).resolve().parent.parent
INPUTS = [HeadInput("v1", 12, "visual"), HeadInput("v2", 8, "visual"), HeadInput("a1", 6, "audio")]


def _features(n: int, t: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {i.name: torch.randn(n, t, i.dim, generator=g) for i in INPUTS}


@pytest.mark.parametrize("projection_dim", [None, 4])
@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_every_variant_shapes_and_masking(kind, projection_dim):
    torch.manual_seed(0)
    head = FusionHead(INPUTS, 5, HeadConfig(kind=kind, projection_dim=projection_dim, attention_heads=2)).eval()
    x = _features(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    logits = head(x, mask)
    assert logits.shape == (3, 4, 5) and torch.isfinite(logits).all()
    assert (logits[~mask] == 0).all()
    # what lies in masked seconds never reaches the valid ones
    noisy = {n: v.clone() for n, v in x.items()}
    for v in noisy.values():
        v[~mask] = 1e3
    torch.testing.assert_close(head(noisy, mask)[mask], logits[mask])


def test_attention_stages_of_each_kind():
    assert HeadConfig(kind="ns").attention_stages == frozenset()
    assert HeadConfig(kind="es+ms+ls").attention_stages == {"es", "ms", "ls"}
    head = FusionHead(INPUTS, 3, HeadConfig(kind="ms"))
    assert len(head.early) == 0 and head.late is None and set(head.per_modality) == {"visual", "audio"}
    widths = [m.attention.embed_dim for m in head.per_modality.values()]
    assert widths == [20, 6]  # concatenated visual (12 + 8) and audio embeddings
    assert FusionHead(INPUTS, 3, HeadConfig(kind="ls", projection_dim=4)).late.attention.embed_dim == 12


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_a_clip_scores_the_same_alone_or_in_any_batch(kind):
    torch.manual_seed(0)
    head = FusionHead(INPUTS, 4, HeadConfig(kind=kind)).eval()
    x = _features(9, 5, seed=1)
    mask = torch.ones(9, 5, dtype=torch.bool)
    mask[3, 3:] = False  # clips of different lengths in one batch
    mask[0, 2:] = False
    mask[7, 4:] = False
    with torch.no_grad():
        alone = head({n: v[3:4] for n, v in x.items()}, mask[3:4])[0]
        for rows in ([3, 0, 1], [8, 7, 3, 2, 1, 0], list(range(9))):
            position = rows.index(3)
            batch = head({n: v[rows] for n, v in x.items()}, mask[rows])[position]
            torch.testing.assert_close(batch, alone, rtol=0, atol=1e-6)


def test_the_papers_2d_attention_mixes_the_batch():
    """The deviation docs/deviations.md documents: MultiheadAttention on (batch, features) attends across samples."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 1).eval()
    x = torch.randn(6, 8)
    with torch.no_grad():
        in_batch = attention(x, x, x)[0][:1]
        alone = attention(x[:1], x[:1], x[:1])[0]
    assert not torch.allclose(in_batch, alone, atol=1e-3)


def _toy_clips(n_per_class: int = 4, n_classes: int = 3, t: int = 4, seed: int = 0) -> ClipSet:
    rng = np.random.default_rng(seed)
    targets = np.repeat(np.arange(n_classes), n_per_class)
    features = {i.name: (rng.normal(size=(len(targets), t, i.dim)) + targets[:, None, None] * 0.5).astype(np.float16)
                for i in INPUTS}
    mask = np.ones((len(targets), t), bool)
    mask[::5, -1] = False
    return ClipSet(np.array([f"c{i}" for i in range(len(targets))]), targets.astype(str), targets.astype(np.int64),
                   tuple(map(str, range(n_classes))), features, mask, {i.name: "fp" for i in INPUTS},
                   {i.name: i.modality for i in INPUTS})


@pytest.mark.parametrize("kind", ["ls", "es+ms+ls", "mlp"])
def test_tiny_set_is_overfit_to_100_percent(kind):
    clips = _toy_clips()
    config = TrainConfig(epochs=60, batch_size=4, lr=3e-3, schedule="constant", seed=2)
    head = train_head(clips, HeadConfig(kind=kind, dropout=0.0, projection_dim=8), config)
    metrics = classification_metrics(head.predict_proba(clips), clips.mask, clips.targets, clips.classes)
    assert metrics["second_accuracy"] == 1.0 and metrics["clip_accuracy"] == 1.0


def test_training_is_seeded_and_deterministic():
    clips = _toy_clips()
    config = TrainConfig(epochs=2, batch_size=4, mixup_fraction=0.5, seed=3)
    a = train_head(clips, HeadConfig(kind="es+ls"), config).predict_proba(clips)
    b = train_head(clips, HeadConfig(kind="es+ls"), config).predict_proba(clips)
    np.testing.assert_array_equal(a, b)


def test_presets_round_trip_and_match_the_papers():
    for name, config in PRESETS.items():
        assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config, name
    text, code = PRESETS["paper-text"], PRESETS["paper-code"]
    assert (text.optimizer, text.epochs, text.batch_size, text.batch_unit) == ("sgd", 20, 32, "clips")
    # the text: 1e-3 in the first epoch, "linearly reduced to 0.00001 by the 19th epoch"
    assert text.learning_rate(0) == pytest.approx(1e-3) and text.learning_rate(18) == pytest.approx(1e-5)
    assert text.learning_rate(17) > 1e-5 and text.learning_rate(19) == pytest.approx(1e-5)
    assert (code.optimizer, code.epochs, code.weight_decay, code.momentum) == ("sgd", 30, 0.01, 0.0)
    assert (code.schedule, code.schedule_epochs, code.batch_size, code.batch_unit) == ("cosine", 24, 32, "seconds")
    assert code.learning_rate(12) == pytest.approx((1e-3 + 1e-5) / 2) and code.learning_rate(24) == pytest.approx(1e-5)
    assert code.learning_rate(29) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * 29 / 24)) / 2)
    assert code.learning_rate(29) > 1e-4  # past T_max the released code's rate climbs back
    assert PRESETS["adam-mixup"].mixup_ratio == 0.4 and PRESETS["adam-mixup"].mixup_fraction == 0.2
    assert preset("paper-code", epochs=3).epochs == 3
    head = HeadConfig(kind="es+ms", projection_dim=32, mlp_hidden=(7, 5))
    assert HeadConfig.from_dict(json.loads(json.dumps(head.to_dict()))) == head
    assert PRESET_CHOICES == tuple(PRESETS)
    assert set(ATTENTION_KINDS) < set(HEAD_KINDS)


@pytest.mark.parametrize("bad", [dict(kind="late"), dict(dropout=1.0), dict(projection_dim=0), dict(attention_heads=0)])
def test_bad_head_configs_are_refused(bad):
    with pytest.raises(ValueError):
        HeadConfig(**bad)


def _torch_schedule(config: TrainConfig) -> list[float]:
    """The rate of each epoch as the released code gets it: a torch scheduler stepped once after every epoch."""
    optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.schedule_epochs,
                                                               eta_min=config.lr_final)
    else:
        scheduler = torch.optim.lr_scheduler.LinearLR(optimiser, start_factor=1.0, end_factor=config.lr_final / config.lr,
                                                      total_iters=config.schedule_epochs)
    rates = []
    for _ in range(config.epochs):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("name", ["paper-text", "paper-code", "adam"])
def test_preset_schedules_match_torch_schedulers_epoch_by_epoch(name):
    config = PRESETS[name]
    expected = _torch_schedule(config)
    ours = [config.learning_rate(e) for e in range(config.epochs)]
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-15)
    if name == "paper-code":  # 2_train_av_classifiers.py: T_max = max(20, int(30 * 0.8)) = 24, 30 epochs
        assert min(ours) == pytest.approx(1e-5) and int(np.argmin(ours)) == 24
        assert all(b > a for a, b in zip(ours[24:], ours[25:]))


def test_train_history_follows_the_schedule_and_seconds_batches_count_rows():
    clips = _toy_clips()
    n_seconds = int(clips.mask.sum())
    config = TrainConfig(optimizer="sgd", epochs=5, batch_size=3, schedule="cosine", schedule_epochs=3,
                         batch_unit="seconds", seed=1)
    trained = train_head(clips, HeadConfig(kind="ls", projection_dim=8), config)
    np.testing.assert_allclose([h["lr"] for h in trained.history], _torch_schedule(config), rtol=1e-9)
    single = single_seconds(clips)
    assert len(single) == n_seconds and single.mask.shape == (n_seconds, 1) and single.mask.all()
    rows, seconds = np.nonzero(clips.mask)
    for name, features in clips.features.items():
        np.testing.assert_array_equal(single.features[name][:, 0], features[rows, seconds])
    np.testing.assert_array_equal(single.targets, clips.targets[rows])
    assert trained.predict_proba(clips).shape[:2] == clips.mask.shape  # evaluation stays per clip


def test_bad_train_configs_are_refused():
    for bad in (dict(optimizer="rmsprop"), dict(schedule="step"), dict(mixup_fraction=1.5), dict(epochs=0),
                dict(batch_unit="rows")):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("paper")


def test_joint_mixup_mixes_both_modalities_and_labels_with_ratio_0_4():
    x = {"v": torch.arange(4.0).view(4, 1, 1).expand(4, 2, 3).clone(), "a": torch.arange(4.0).view(4, 1, 1).expand(4, 2, 2).clone()}
    mask = torch.ones(4, 2, dtype=torch.bool)
    targets = torch.eye(4)
    config = TrainConfig(mixup_fraction=0.5, mixup_ratio=0.4)
    for seed in range(20):  # exactly the fraction is mixed: a clip is never its own partner
        _, _, soft = mixup(x, mask, targets, config.mixup_fraction, config.mixup_ratio, torch.Generator().manual_seed(seed))
        assert sum(not torch.equal(soft[i], targets[i]) for i in range(4)) == 2
    mixed, new_mask, soft = mixup(x, mask, targets, config.mixup_fraction, config.mixup_ratio, torch.Generator().manual_seed(0))
    changed = [i for i in range(4) if not torch.equal(soft[i], targets[i])]
    assert len(changed) == 2 and new_mask.all()
    for i in changed:
        partner = next(j for j in range(4) if j != i and soft[i, j] > 0)
        assert soft[i, i] == pytest.approx(0.4) and soft[i, partner] == pytest.approx(0.6)
        for v in mixed.values():
            assert torch.allclose(v[i], torch.full_like(v[i], 0.4 * i + 0.6 * partner))
    assert torch.equal(x["v"][:, 0, 0], torch.arange(4.0))  # inputs untouched


def test_scene_probabilities_map_to_indoor_outdoor_vehicle():
    classes = ("airport", "bus", "park", "tram")
    probs = np.array([[[0.2, 0.4, 0.3, 0.1]]])
    np.testing.assert_allclose(grouped_probs(probs, classes, tau_taxonomy(classes).class_set("3")), [[[0.2, 0.3, 0.5]]])


@pytest.fixture
def store_with_view(tiny_store, tmp_path) -> str:
    """A copy of the tiny store with augmented views of debug_visual: ``paper_aug_1`` (original + 100) and
    ``randaug_1`` (original + 200)."""
    location = str(tmp_path / "views.zarr")
    shutil.copytree(tiny_store, location)
    store = StoreWriter.open(location)
    attrs = store.group_attrs("debug_visual")
    original = store.root["extractors/debug_visual/original"]
    for view, shift in (("paper_aug_1", 100.0), ("randaug_1", 200.0)):
        store.prepare_group("debug_visual", spec=attrs["spec"], fingerprint=attrs["fingerprint"],
                            weights=attrs["weights"], view=view)
        for block in range(store.n_blocks):
            rows = store.block_slice(block)
            n = rows.stop - rows.start
            store.write_block("debug_visual", block, BlockResult(
                embeddings=np.asarray(original["embeddings"][rows], np.float32) + shift,
                valid=np.asarray(original["valid"][rows]), status=np.full(n, DONE, np.int8),
                error_stage=np.array([""] * n), error_message=np.array([""] * n),
                extract_seconds=np.zeros(n, np.float32)), view=view)
        store.finalize_if_complete("debug_visual", view)
    return location


def test_augmented_views_are_training_samples_only(store_with_view, tmp_path):
    store = EmbeddingStore.open(store_with_view)
    names = ["debug_visual", "debug_audio"]
    assert augmented_views(store, names) == ["paper_aug_1", "randaug_1"] and augmented_views(store, ["debug_audio"]) == []
    assert augmented_views(store, names, ("randaug",)) == ["randaug_1"]
    original = load_clips(store, names, "train", 10)
    view = load_clips(store, names, "train", 10, "paper_aug_1")
    order = np.argsort(original.ids)
    np.testing.assert_array_equal(view.ids, np.array([f"{c}#paper_aug_1" for c in original.ids[order]]))
    np.testing.assert_allclose(view.features["debug_visual"].astype(np.float32),
                               original.features["debug_visual"][order].astype(np.float32) + 100, atol=0.1)
    np.testing.assert_array_equal(view.features["debug_audio"], original.features["debug_audio"][order])
    assert len(load_views(store, names, "train", 10, True)) == 3 * len(original)
    assert len(load_views(store, names, "train", 10, True, ("paper_aug",))) == 2 * len(original)
    read_twice, reused = (load_views(store, names, "train", 10, True, original=o) for o in (None, original))
    np.testing.assert_array_equal(reused.ids, read_twice.ids)  # the caller's original rows stand in for a second read
    np.testing.assert_array_equal(reused.features["debug_visual"], read_twice.features["debug_visual"])

    only_paper_aug = TrainConfig(epochs=1, view_kinds=("paper_aug",))
    trained, metrics = run_training(store_with_view, names, 10, HeadConfig(kind="ls", projection_dim=8),
                                    only_paper_aug, tmp_path / "run")
    test = load_clips(store, names, "test", 10)
    assert metrics["n_train_clips"] == 2 * len(original) and metrics["n_clips"] == len(test)
    # the scaler saw the chosen training views and nothing of the test split or of the other view (leak test)
    train_visual = np.concatenate([original.features["debug_visual"][original.mask],
                                   view.features["debug_visual"][view.mask]]).astype(np.float64)
    np.testing.assert_allclose(load_head(tmp_path / "run" / "model.pt").scaler.mean["debug_visual"],
                               train_visual.mean(0), rtol=1e-6)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["views"] == ["paper_aug_1"]
    _, with_flag = run_training(store_with_view, names, 10, HeadConfig(kind="ls", projection_dim=8),
                                replace(only_paper_aug, evaluate_augmented_views=True), tmp_path / "run2")
    assert with_flag["n_clips"] == 2 * len(test)
    assert with_flag["grouped"]["3"]["classes"] == ["indoor", "outdoor", "vehicle"]
    assert TrainConfig.from_dict(json.loads(json.dumps(only_paper_aug.to_dict()))) == only_paper_aug


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classify", *args], cwd=REPO, capture_output=True, text=True)


def test_predict_cli_writes_dcase_format(tiny_store, tmp_path):
    out = _run("train", "--store", tiny_store, "--head", "ls", "--projection-dim", "8", "--epochs", "2",
               "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    assert "--classes 3 clip accuracy from this 10-class head" in out.stdout
    out = _run("predict", "--model", str(tmp_path / "run" / "model.pt"), "--store", tiny_store, "--split", "test",
               "--out", str(tmp_path / "pred.csv"))
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "pred.csv") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    classes = json.loads((tmp_path / "run" / "config.json").read_text())["classes"]
    assert rows[0] == ["filename", "scene_label", *classes]
    n_test = len(load_clips(EmbeddingStore.open(tiny_store), ["debug_visual", "debug_audio"], "test", 10))
    assert len(rows) == 1 + n_test
    for row in rows[1:]:
        probs = np.array(row[2:], float)
        assert row[1] == classes[int(probs.argmax())] and probs.sum() == pytest.approx(1.0, abs=1e-4)


def test_predict_scores_an_unlabeled_split(tiny_dataset, tiny_store, tmp_path):
    """DCASE-style output for clips without labels (a CSV manifest with an empty label column)."""
    from extract.runner import RunConfig, run_extraction

    videos = sorted((tiny_dataset / "video").glob("*.mp4"))[:3]
    (tmp_path / "media").mkdir()
    for v in videos:
        shutil.copy(v, tmp_path / "media")
        shutil.copy(tiny_dataset / "audio" / f"{v.stem}.wav", tmp_path / "media")
    manifest = tmp_path / "unlabeled.csv"
    manifest.write_text("video,audio,label,split\n" + "".join(
        f"media/{v.name},media/{v.stem}.wav,,holdout\n" for v in videos))
    store = str(tmp_path / "unlabeled.zarr")
    run_extraction(RunConfig(data=manifest, store=store, extractors=("debug_visual", "debug_audio"), device="cpu",
                             progress=False))
    assert _run("train", "--store", tiny_store, "--head", "ls", "--projection-dim", "8", "--epochs", "1",
                "--out", str(tmp_path / "run")).returncode == 0
    out = _run("predict", "--model", str(tmp_path / "run" / "model.pt"), "--store", store, "--split", "holdout",
               "--out", str(tmp_path / "pred.csv"))
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "pred.csv") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert [Path(r[0]).stem for r in rows[1:]] == [v.stem for v in videos] and len(rows[0]) == 2 + 10


def test_ablation_writes_table_and_reuses_complete_runs(tiny_store, tmp_path):
    args = ("ablation", "--store", tiny_store, "--epochs", "1", "--projection-dim", "8", "--out", str(tmp_path / "abl"))
    out = _run(*args)
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "abl" / "ablation.csv") as f:
        table = list(csv.DictReader(f))
    # Table 2 (8 variants + the MLP, 10 classes) + LS without augmented views + LS for VASC-3, VSC-10/3, ASC-10/3
    assert len(table) == 9 + 1 + 5
    runs = [r["run"] for r in table]
    assert runs[:2] == ["audio-visual-ns-10cls", "audio-visual-ls-10cls"] and "audio-ls-3cls" in runs
    paper = {r["run"]: r["paper_clip_acc"] for r in table}
    # every printed figure of Table 2 (10 classes) and Table 1 (VASC/ASC/VSC at 10 and 3 classes)
    assert paper == {
        "audio-visual-ns-10cls": "94.16", "audio-visual-ls-10cls": "97.24", "audio-visual-es-10cls": "91.73",
        "audio-visual-ms-10cls": "96.98", "audio-visual-es_ls-10cls": "93.75", "audio-visual-ms_ls-10cls": "97.02",
        "audio-visual-es_ms-10cls": "92.65", "audio-visual-es_ms_ls-10cls": "94.05", "audio-visual-mlp-10cls": "",
        "audio-visual-ls-10cls-no-da": "96.98", "audio-visual-ls-3cls": "99.95",
        "visual-ls-10cls": "94.32", "visual-ls-3cls": "99.93", "audio-ls-10cls": "78.84", "audio-ls-3cls": "99.84",
    }
    rows = {r["run"]: r for r in table}
    assert rows["audio-visual-ls-10cls-no-da"]["paper_row"] == "Table 2: Proposed without DA"
    assert rows["audio-ls-3cls"]["paper_row"] == "Table 1: ASC, 3 classes"
    config_of = {run: json.loads((tmp_path / "abl" / run / "config.json").read_text()) for run in runs}
    assert config_of["audio-visual-ls-10cls-no-da"]["train"]["augmented_views"] is False
    assert config_of["audio-visual-ls-10cls"]["train"]["augmented_views"] is True
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "paper, TAU, real weights" in md and "| 96.98 | Table 2: Proposed without DA |" in md
    assert (tmp_path / "abl" / "ablation.png").exists()
    assert {r["reused"] for r in table} == {"trained"}
    stamp = (tmp_path / "abl" / "audio-ls-3cls" / "metrics.json").stat().st_mtime_ns
    again = _run(*args)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "abl" / "audio-ls-3cls" / "metrics.json").stat().st_mtime_ns == stamp
    assert "reused" in again.stderr
    with open(tmp_path / "abl" / "ablation.csv") as f:
        assert {r["reused"] for r in csv.DictReader(f)} == {"reused"}


def test_ablation_reuse_is_keyed_on_the_code_version(tiny_store, tmp_path, monkeypatch):
    from classify import ablation, run

    args = (tiny_store, tmp_path / "abl", HeadConfig(kind="ls", projection_dim=8), TrainConfig(epochs=1))
    first = ablation.run_ablation(*args, extractors=["debug_audio"])
    assert [r["reused"] for r in first] == ["trained", "trained"]
    assert json.loads((tmp_path / "abl" / "audio-ls-10cls" / "config.json").read_text())["code_version"] == run.code_version()
    assert [r["reused"] for r in ablation.run_ablation(*args, extractors=["debug_audio"])] == ["reused", "reused"]
    monkeypatch.setattr(run, "code_version", lambda: "another-version")
    assert [r["reused"] for r in ablation.run_ablation(*args, extractors=["debug_audio"])] == ["trained", "trained"]


@pytest.mark.parametrize("augmented", [True, False])
def test_vadd_heads_train_on_the_views_their_config_names(store_with_view, tmp_path, monkeypatch, augmented):
    """The released code's VSC/ASC train with 'data_aug': 1; ours follow config.train.augmented_views and say so."""
    from vadd import evaluate

    seen: dict[str, list[str]] = {}
    real_train_head = evaluate.train_head

    def recording_train_head(clips, head_config, config):
        seen["+".join(clips.features)] = list(clips.ids)
        return real_train_head(clips, head_config, config)

    monkeypatch.setattr(evaluate, "train_head", recording_train_head)
    train = TrainConfig(epochs=1, augmented_views=augmented, view_kinds=("paper_aug",))
    config = evaluate.VaddConfig(validation_fraction=0.4, train=train, head=HeadConfig(kind="ls", projection_dim=8))
    metrics = evaluate.evaluate_vadd(store_with_view, config, tmp_path / "vadd")
    views = ["paper_aug_1"] if augmented else []
    assert metrics["training_views"] == {"visual": views, "audio": [], "audio_visual": views}
    assert json.loads((tmp_path / "vadd" / "config.json").read_text())["train"]["augmented_views"] is augmented
    visual_ids = seen["debug_visual"]
    assert any(i.endswith("#paper_aug_1") for i in visual_ids) is augmented
    assert not any("#" in i for i in seen["debug_audio"])
    originals = [i for i in visual_ids if "#" not in i]
    assert sorted(i.split("#")[0] for i in visual_ids) == sorted(originals * (2 if augmented else 1))
