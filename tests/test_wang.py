"""The second paper's system (Wang et al., #7): FCNN front end and network, audio augmentations, training and
extraction of ``fcnn.tau``, frames 1 + 15 per second, joint fine-tuning and the ablation rows.

Training tests shrink the FCNN's widths (``FILTERS_PER_CHANNEL``, same layers) so they run in seconds on CPU.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from extract import cli
from extract.audio_augment import (
    PAPER_AUGMENT, AudioAugmentConfig, augment_window, fit_length, offline_augment, pitch_shift, spec_augment,
    swap_channels, time_stretch,
)
from extract.decode_plan import DecodePlan, decode_clip
from extract.extractor import create_extractor
from extract.manifest import Clip
from extract.models import fcnn
from extract.registry import ExtractorSpec, get_spec
from extract.store import EmbeddingStore
from tests.timestamp_media import read_timestamp, write_timestamp_video

RATE = 48_000
TINY_FILTERS = (2, 2, 2)


def _peak_hz(x: np.ndarray, rate: int = RATE) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x))) * rate / len(x))


def _tone(freq_hz: float, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * RATE)) / RATE).astype(np.float32)


# ---------------------------------------------------------------- FCNN


def test_fcnn_input_is_six_channels_of_128_mel_bands_and_output_one_score_per_scene():
    torch.manual_seed(0)
    model = fcnn.FCNN(get_spec("fcnn.tau")).eval()
    x = torch.randn(2, 2, RATE) * 0.1
    assert model.features(x).shape == (2, 6, 128, 39)  # the paper's 39 x 128 x 6 (deltas without padding)
    assert model(x).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and [c.out_channels for c in convs] == [144] * 2 + [288] * 2 + [576] * 4 + [10]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 11  # input + 9 convs + final
    assert torch.equal(model(x), model.classify(x))


def test_fcnn_channels_are_logmel_delta_deltadelta_per_audio_channel():
    frontend = fcnn.LogMelDeltas()
    left, right = _tone(1000.0), _tone(8000.0)
    feats = frontend(torch.from_numpy(np.stack([left, right]))[None])[0]  # (6, 128, 39)
    mel_hz = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 24000 / 700), 130)[1:-1] / 2595) - 1)
    assert abs(mel_hz[int(feats[0, :, 20].argmax())] - 1000) < 60  # channel 0 = left log-mel
    assert abs(mel_hz[int(feats[3, :, 20].argmax())] - 8000) < 300  # channel 3 = right log-mel
    assert feats[1].abs().max() < 0.2 * feats[0].abs().max()  # a steady tone: small deltas


def test_htk_filterbank_and_delta_follow_the_librosa_formulas():
    bank = fcnn.htk_mel_filterbank(48_000, 2048, 128)
    assert bank.shape == (128, 1025) and bank.max() <= 1.0 and (bank.sum(axis=1) > 0).all()
    ramp = torch.arange(20, dtype=torch.float32).view(1, 1, 20).repeat(1, 3, 1)
    assert torch.allclose(fcnn.delta(ramp), torch.ones(1, 3, 16))  # slope 1; no padding: 4 frames fewer


def _hu_deltas(x: np.ndarray) -> np.ndarray:
    """Hu et al.'s deltas() on (..., T) as their scripts write it on (N, F, T, C): two slices, no padding."""
    out = (x[..., 2:] - x[..., :-2]) / 10.0
    return out[..., 1:-1] + (x[..., 4:] - x[..., :-4]) / 5.0


def test_frontend_stacks_logmel_and_deltas_without_padding_as_hu_et_al():
    frontend = fcnn.LogMelDeltas()
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 2, RATE)).astype(np.float32) * 0.1)
    feats = frontend(wave)[0].double().numpy()  # (6, 128, 39)
    spec = torch.stft(wave[0].double(), 2048, 1024, window=torch.hann_window(2048, dtype=torch.float64), center=True,
                      pad_mode="reflect", return_complex=True).abs().square().numpy()  # (2, 1025, 47)
    logmel = np.log(fcnn.htk_mel_filterbank(RATE, 2048, 128).astype(np.float64) @ spec + 1e-8)  # (2, 128, 47)
    d1 = _hu_deltas(logmel)
    expected = np.stack([logmel[..., 4:-4], d1[..., 2:-2], _hu_deltas(d1)], axis=1).reshape(6, 128, 39)
    np.testing.assert_allclose(feats, expected, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------- augmentations


@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_time_stretch_changes_duration_not_pitch(rate):
    y = time_stretch(_tone(1000.0), rate)
    assert len(y) == round(RATE / rate) and abs(_peak_hz(y) - 1000.0) < 5


@pytest.mark.parametrize("steps", [-4.0, 3.0])
def test_pitch_shift_changes_pitch_not_duration(steps):
    y = pitch_shift(_tone(1000.0), steps)
    assert len(y) == RATE and abs(_peak_hz(y) - 1000.0 * 2 ** (steps / 12)) < 5


def test_noise_mix_and_length_fitting():
    cfg = AudioAugmentConfig()
    x = np.zeros((2, 100), np.float32)
    x[:, 50:] = 0.5
    noisy = augment_window(x, "noise", cfg, np.random.default_rng(0))
    assert (noisy[:, :50] == 0).all() and 0.001 < np.std(noisy[:, 50:] - 0.5) < 0.02
    partner = np.ones_like(x)
    mixed = augment_window(x, "mix", cfg, np.random.default_rng(0), partner)
    g2 = mixed[0, 0]
    assert 0.5 <= g2 <= 1.0 and 0.5 <= (mixed[0, 60] - g2) / 0.5 <= 1.0
    assert np.array_equal(fit_length(np.arange(3), 7), [0, 1, 2, 0, 1, 2, 0])


def test_offline_augment_is_seeded_and_mixes_within_a_scene():
    rng = np.random.default_rng(0)
    waves = rng.standard_normal((6, 2, 4096)).astype(np.float32) * 0.1
    targets, rows = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 2, 3, 4, 5])
    cfg = AudioAugmentConfig(offline=("noise", "mix"), copies=2)
    w1, t1, r1 = offline_augment(waves, targets, rows, cfg, seed=3)
    w2, _, _ = offline_augment(waves, targets, rows, cfg, seed=3)
    assert w1.shape == (6 * 2 * 2, 2, 4096) and np.array_equal(w1, w2)
    assert list(t1[:6]) == list(targets) and list(r1[:6]) == list(rows)
    for i, mix in enumerate(w1[12:18]):  # first mix copy: g1 * own + g2 * the other clip of the same scene
        partner = waves[i ^ 1]
        coef, *_ = np.linalg.lstsq(np.stack([waves[i].ravel(), partner.ravel()], 1), mix.ravel(), rcond=None)
        assert np.all((coef >= 0.5 - 1e-4) & (coef <= 1.0 + 1e-4))


def test_spec_augment_masks_at_most_ten_percent_per_axis_with_the_mean():
    torch.manual_seed(0)
    x = torch.randn(64, 6, 128, 47) + 5
    out = spec_augment(x, 0.1, torch.Generator().manual_seed(0))
    changed = out != x
    freq_rows = changed.any(dim=3).any(dim=1).sum(dim=1)  # masked frequency bands (+ those hit by the time mask)
    time_cols = changed.all(dim=2).any(dim=1).sum(dim=1)  # fully masked frames
    assert int(time_cols.max()) <= int(0.1 * 47) and changed.any()
    assert int(changed.all(dim=3).any(dim=1).sum(dim=1).max()) <= int(0.1 * 128)
    assert int(freq_rows.max()) <= 128
    b, c = torch.nonzero(changed.flatten(2).any(-1))[0]
    assert torch.allclose(out[b, c][changed[b, c]], x[b, c].mean().expand(int(changed[b, c].sum())))


def test_channel_swap_reverses_the_channels_of_some_examples():
    x = torch.stack([torch.zeros(8, 10), torch.ones(8, 10)], dim=1)
    out = swap_channels(x, 0.5, torch.Generator().manual_seed(0))
    swapped = out[:, 0, 0] == 1
    assert 0 < int(swapped.sum()) < 8 and torch.equal(out[swapped], x[swapped].flip(1))
    assert torch.equal(swap_channels(x, 0.0, torch.Generator()), x)


def test_paper_augment_config_round_trips():
    assert PAPER_AUGMENT.offline == ("pitch", "speed", "noise", "mix") and PAPER_AUGMENT.on_the_fly
    assert AudioAugmentConfig.from_dict(json.loads(json.dumps(PAPER_AUGMENT.to_dict()))) == PAPER_AUGMENT
    with pytest.raises(ValueError, match="offline augmentations"):
        AudioAugmentConfig(offline=("reverb",))


# ---------------------------------------------------------------- train + extract


@pytest.fixture(scope="module")
def trained_fcnn(tiny_dataset, tmp_path_factory) -> dict:
    """``train-extractor fcnn.tau --augment paper --store S`` with narrow widths (1 epoch)."""
    root = tmp_path_factory.mktemp("fcnn")
    store = str(root / "emb.zarr")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVSCENE_WEIGHTS", str(root / "weights"))
        mp.setattr(fcnn, "FILTERS_PER_CHANNEL", TINY_FILTERS)
        args = ["train-extractor", "fcnn.tau", "--data", str(tiny_dataset), "--store", store, "--epochs", "1",
                "--batch-size", "16", "--augment", "paper", "--device", "cpu", "--no-progress"]
        assert cli.main(args) == 0
    return {"store": store, "record": json.loads((root / "weights" / "fcnn_tau.pt.run.json").read_text())}


def test_fcnn_trains_with_the_paper_augmentations_on_train_clips_only(trained_fcnn, tiny_dataset):
    from extract.manifest import read_manifest

    record = trained_fcnn["record"]
    train_ids = {c.clip_id for c in read_manifest(tiny_dataset).by_split("train")}
    assert record["extractor"] == "fcnn.tau" and len(record["classes"]) == 10
    assert set(record["train_clip_ids"]) == train_ids
    assert record["config"]["augment"]["offline"] == ["pitch", "speed", "noise", "mix"]
    assert record["config"]["augment"]["spec_augment_fraction"] == 0.1
    metrics = record["metrics"]
    n_val_windows = metrics["n_val_windows"]
    # 4 offline copies of every non-validation window; validation windows stay original
    assert metrics["n_augmented_windows"] == 4 * (record["data"]["n_windows"] - n_val_windows)
    assert record["data"]["n_offline_augmented_windows"] == metrics["n_augmented_windows"]
    assert np.isfinite(metrics["epochs"][0]["train_loss"])


def test_fcnn_embeddings_go_into_the_store(trained_fcnn):
    store = EmbeddingStore.open(trained_fcnn["store"])
    assert store.extractor_names() == ["fcnn.tau"]
    attrs = store.group_attrs("fcnn.tau")
    assert attrs["training_run"]["run_id"] == trained_fcnn["record"]["run_id"]
    assert (store.status("fcnn.tau") == 1).all()


def test_weights_trained_for_another_front_end_version_are_refused(trained_fcnn, tmp_path, monkeypatch):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(Path(trained_fcnn["store"]).parent / "weights", weights)
    record_file = weights / "fcnn_tau.pt.run.json"
    record = json.loads(record_file.read_text())
    assert record["spec_version"] == get_spec("fcnn.tau").version == "2"
    record_file.write_text(json.dumps({**record, "spec_version": "1"}))  # librosa deltas, 47 frames
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(weights))
    monkeypatch.setattr(fcnn, "FILTERS_PER_CHANNEL", TINY_FILTERS)
    with pytest.raises(ValueError, match="trained for version 1 of the extractor, this is version 2"):
        create_extractor("fcnn.tau", device="cpu")


def test_specaugment_needs_a_split_module(tiny_dataset):
    from extract.manifest import read_manifest
    from extract.train_extractor import ExtractorTrainConfig, train_extractor

    cfg = ExtractorTrainConfig(epochs=1, augment=AudioAugmentConfig(spec_augment_fraction=0.1), device="cpu")
    with pytest.raises(ValueError, match="SpecAugment needs"):
        train_extractor("iov_cnn420", read_manifest(tiny_dataset), None, cfg)


# ---------------------------------------------------------------- frames 1 and 15 of each second


def _f1f15_debug_spec() -> ExtractorSpec:
    spec = get_spec("debug_visual")
    return replace(spec, visual=replace(spec.visual, frame_offsets_seconds=(0.0, 14 / 30)))


def test_f1f15_spec_enters_the_fingerprint_and_defaults_keep_old_dicts():
    dense, f1f15 = get_spec("densenet161.places365"), get_spec("densenet161.places365_f1f15")
    assert "frame_offsets_seconds" not in dense.to_dict()["visual"]  # old fingerprints unchanged
    assert f1f15.to_dict()["visual"]["frame_offsets_seconds"] == (0.0, 14 / 30)
    assert f1f15.visual.frame_size[:2] == (224, 224) and dense.visual.frame_size[:2] == (256, 224)  # Wang: 224 x 224
    assert ExtractorSpec.from_dict(json.loads(json.dumps(f1f15.to_dict()))) == f1f15
    assert ExtractorSpec.from_dict(json.loads(json.dumps(dense.to_dict()))) == dense
    with pytest.raises(ValueError, match="frame_offsets_seconds"):
        replace(dense.visual, frame_offsets_seconds=(1.5,))


def test_f1f15_decodes_frames_1_and_15_of_each_second_and_sums_their_embeddings(tmp_path):
    media = write_timestamp_video(tmp_path / "ts30.mp4", 90, 30, 320, 240, 30)
    spec = _f1f15_debug_spec()
    plain = get_spec("debug_visual")
    clip = Clip("ts30", "airport", "train", media.path, None)
    decoded = decode_clip(clip, 3, DecodePlan.for_specs([spec, plain]))
    frames = decoded.input_for(spec)
    assert frames.shape == (3, 2, 32, 32, 3)
    big = decode_clip(clip, 3, DecodePlan.for_specs([replace(spec, visual=replace(
        spec.visual, resize_shorter_px=240, crop_px=240))]))
    big_frames = next(iter(big.frames.values()))
    assert [[read_timestamp(big_frames[k, j]) for j in range(2)] for k in range(3)] == [[0, 14], [30, 44], [60, 74]]
    assert decoded.input_for(plain).shape == (3, 32, 32, 3)  # the store's k + 0.5 s frame, as before
    extractor = create_extractor("debug_visual", spec=spec, device="cpu")
    summed = extractor.embed(frames)
    separate = extractor.embed(frames[:, 0]) + extractor.embed(frames[:, 1])
    assert np.allclose(summed, separate, atol=1e-5)


# ---------------------------------------------------------------- fine-tuning and ablation


def test_finetune_updates_both_extractors_and_the_head_for_a_few_steps(tiny_dataset, tmp_path, monkeypatch):
    from classify.finetune import FinetuneConfig, run_finetune

    monkeypatch.setattr(fcnn, "FILTERS_PER_CHANNEL", TINY_FILTERS)
    cfg = FinetuneConfig(visual="debug_visual", audio="fcnn.tau", random_init=True, max_steps=3, batch_size=8,
                         clips_per_chunk=4, device="cpu")
    metrics = run_finetune(tiny_dataset, tmp_path / "ft", cfg)
    assert metrics["steps"] == 3 and all(np.isfinite(h["loss"]) for h in metrics["history"])
    assert metrics["extractor_changed"] == {"visual": True, "audio": True}
    saved = torch.load(tmp_path / "ft" / "model.pt", map_location="cpu", weights_only=True)
    assert {"head", "visual_extractor", "audio_extractor"} <= set(saved)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["finetune"]["lr"] == 1e-5


def test_finetune_augmentations_are_the_papers(monkeypatch):
    from classify.finetune import BatchAugmentation, FinetuneConfig

    monkeypatch.setattr(fcnn, "FILTERS_PER_CHANNEL", TINY_FILTERS)
    torch.manual_seed(0)
    audio = fcnn.FCNN(get_spec("fcnn.tau")).eval()
    cfg = FinetuneConfig(visual="debug_visual", audio="fcnn.tau", random_init=True, device="cpu")
    assert (cfg.spec_augment_fraction, cfg.channel_swap_probability, cfg.mixup_fraction, cfg.mixup_ratio) == (0.1, 0.5, 0.2, 0.4)
    augment = BatchAugmentation(cfg, audio, seed=0)
    assert augment.randaug.config.ops == ("Sharpness", "Contrast", "Identity")
    assert (augment.randaug.config.num_ops, augment.randaug.config.magnitude) == (2, 14)
    frames = np.random.default_rng(0).integers(0, 256, (8, 2, 16, 16, 3), dtype=np.uint8)  # 2 frames a second
    step0, again, step1 = augment.frames(frames, 0), augment.frames(frames, 0), augment.frames(frames, 1)
    assert step0.shape == frames.shape and step0.dtype == np.uint8 and np.array_equal(step0, again)
    assert not np.array_equal(step0, frames) and not np.array_equal(step0, step1)
    wave = torch.randn(4, 2, RATE) * 0.1
    with torch.no_grad():
        plain = audio(wave)
        assert not torch.allclose(augment.audio_embedding(wave), plain)
        off = BatchAugmentation(replace(cfg, spec_augment_fraction=0.0, channel_swap_probability=0.0), audio, seed=0)
        assert torch.equal(off.audio_embedding(wave), plain)
    feats = {"v": torch.randn(10, 1, 4), "a": torch.randn(10, 1, 3)}
    targets = torch.eye(10)
    _, _, soft = augment.mixup(feats, torch.ones(10, 1, dtype=torch.bool), targets)
    mixed = [i for i in range(10) if not torch.equal(soft[i], targets[i])]
    assert len(mixed) == 2 and all(sorted(soft[i][soft[i] > 0].tolist()) == pytest.approx([0.4, 0.6]) for i in mixed)


def test_finetune_without_augmentation_runs(tiny_dataset, tmp_path, monkeypatch):
    from classify.finetune import FinetuneConfig, run_finetune

    monkeypatch.setattr(fcnn, "FILTERS_PER_CHANNEL", TINY_FILTERS)
    cfg = FinetuneConfig(visual="debug_visual", audio="fcnn.tau", random_init=True, max_steps=1, batch_size=8,
                         clips_per_chunk=4, device="cpu", augment=False)
    assert run_finetune(tiny_dataset, tmp_path / "plain", cfg)["steps"] == 1
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["finetune"]["augment"] is False


def test_finetune_can_freeze_one_extractor(tiny_dataset, tmp_path, monkeypatch):
    from classify.finetune import FinetuneConfig, run_finetune

    monkeypatch.setattr(fcnn, "FILTERS_PER_CHANNEL", TINY_FILTERS)
    cfg = FinetuneConfig(visual="debug_visual", audio="fcnn.tau", train_modalities=("audio",), random_init=True,
                         max_steps=2, batch_size=8, clips_per_chunk=4, device="cpu")
    assert run_finetune(tiny_dataset, tmp_path / "fa", cfg)["extractor_changed"] == {"visual": False, "audio": True}
    with pytest.raises(ValueError, match="train_modalities"):
        FinetuneConfig(train_modalities=("text",))


def test_wang_ablation_rows_from_the_cache(tiny_store, tmp_path):
    from classify.ablation import WANG_ROWS, run_wang_ablation

    table = run_wang_ablation(tiny_store, tmp_path / "abl", epochs=1)
    assert [r["run"] for r in table] == [r.name for r in WANG_ROWS]
    # the tiny store's audio extractor was not trained here: whether it had audio augmentation is unknown, no figure
    assert all(r["head"] == "mlp" and r["paper_clip_acc"] is None for r in table)
    assert [r["preset"] for r in table][-1] == "adam-mixup"
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "94.2" in md and "paper, TAU, real weights" in md
    # Wang's Tables 1 and 3 are printed in full below the table
    for label, acc in (("FCNN + DenseNet, Pre_V", 92.5), ("VGGish (AudioSet), Fine_A", 59.3),
                       ("audio + video + mixup 100 %", 94.0), ("video", 93.7)):
        assert f"| {label} | {acc} |" in md


def test_wang_paper_column_follows_the_fcnn_training():
    from classify.ablation import WANG_ROWS, WANG_TABLE1, WANG_TABLE3, wang_published

    # the published figures, checked against the paper's text (Tables 1 and 3)
    assert [acc for _, acc in WANG_TABLE1] == [59.3, 75.2, 76.2, 80.3, 87.4, 91.6, 92.2, 92.5, 93.1, 92.9, 93.2]
    assert [acc for _, acc in WANG_TABLE3] == [93.2, 93.4, 93.7, 93.9, 94.2, 93.8, 94.0]
    without = {r.name: wang_published(r.name, False) for r in WANG_ROWS}
    with_aug = {r.name: wang_published(r.name, True) for r in WANG_ROWS}
    assert {k: v[0] for k, v in without.items()} == {
        "wang-audio-mlp": 75.2, "wang-visual-mlp": None, "wang-av-mlp": 92.5, "wang-av-mlp-randaug": 93.7,
        "wang-av-mlp-randaug-mixup": None}
    assert {k: v[0] for k, v in with_aug.items()} == {
        "wang-audio-mlp": None, "wang-visual-mlp": None, "wang-av-mlp": 93.4, "wang-av-mlp-randaug": 93.9,
        "wang-av-mlp-randaug-mixup": 94.2}
    assert with_aug["wang-av-mlp-randaug-mixup"][1] == "Table 3: audio + video + mixup 20 %"
    assert wang_published("wang-av-mlp", None) == (None, "")


def test_the_fcnn_run_record_tells_whether_audio_was_augmented():
    from classify.ablation import fcnn_audio_augmented

    from types import SimpleNamespace

    class Records:
        def __init__(self, runs):
            self.runs = runs

        def group_record(self, name):
            return SimpleNamespace(training_run=self.runs[name])

    record = lambda offline: {"config": {"augment": {"offline": offline}}}  # noqa: E731
    assert fcnn_audio_augmented(Records({"fcnn.tau": record(["pitch", "mix"])}), ["fcnn.tau"]) is True
    assert fcnn_audio_augmented(Records({"fcnn.tau": record([])}), ["fcnn.tau"]) is False
    assert fcnn_audio_augmented(Records({"debug_audio": None}), ["debug_audio"]) is None
