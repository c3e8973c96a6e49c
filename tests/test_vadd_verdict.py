"""The verdict rule end to end: on heads that separate every item it is as good as the paper rule; `vadd check` finds
a spliced span in time."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.store import synthetic_table, write_store
from classify.heads import HeadConfig
from classify.train import TrainConfig
from tests.conftest import DEBUG_EXTRACTORS
from vadd.check import Checker, verdict_line
from vadd.cli import main
from vadd.evaluate import VaddConfig, evaluate_vadd
from vadd.segments import Segment

CLASSES = ("alpha", "beta", "gamma", "delta")  # not TAU scenes: a store of the user's own labels


def separable_store(location: str, seconds: int = 4, train_per_class: int = 15, test_per_class: int = 5) -> None:
    """Class means far apart (visual and audio each their own) plus small noise: both heads separate every clip."""
    rng = np.random.default_rng(0)
    per_class = train_per_class + test_per_class
    labels = np.repeat(CLASSES, per_class)
    splits = np.tile(["train"] * train_per_class + ["test"] * test_per_class, len(CLASSES))
    index = np.repeat(np.arange(len(CLASSES)), per_class)
    groups = {}
    for name, modality in (("sep_visual", "visual"), ("sep_audio", "audio")):
        means = rng.normal(size=(len(CLASSES), 8)) * 3
        noise = rng.normal(size=(len(labels), seconds, 8)) * 0.3
        groups[name] = (modality, (means[index][:, None] + noise).astype(np.float32))
    write_store(location, synthetic_table(labels, splits, seconds), groups, clips_per_chunk=16)


def test_on_separating_heads_the_threshold_rule_scores_the_paper_rules_f1(tmp_path):
    store = str(tmp_path / "sep.zarr")
    separable_store(store)
    config = VaddConfig(validation_fraction=0.3, head=HeadConfig(kind="linear"),
                        train=TrainConfig(epochs=10, batch_size=4, lr=1e-2))
    metrics = evaluate_vadd(store, config, tmp_path / "run")
    assert metrics["paper_rule"]["f1"] == 1.0 and metrics["mismatch_score"]["roc_auc"] == 1.0  # heads separate all
    assert metrics["mismatch_score"]["f1"] == metrics["paper_rule"]["f1"]
    validation = metrics["validation"]["choice"]
    assert validation["f1"] == 1.0 and validation["flagged_by_kind"]["pristine"] == 0
    for calibration in metrics["calibration"].values():
        assert calibration["validation"]["nll_after"] <= calibration["validation"]["nll_before"]
    table = (tmp_path / "run" / "metrics.md").read_text()
    assert "verdict rule F1" in table and "Temperature scaling" in table
    heads = json.loads((tmp_path / "run" / "heads.json").read_text())
    assert heads["rule"] == metrics["mismatch_score"]["rule"]


SPLICE_SCENES = {"airport": 0, "park": 4, "tram": 9}  # three demo scenes
W, H, FPS, SEED = 48, 32, 5, 2


def scene_media(folder: Path, stem: str, scene: int, location: int, seconds: int,
                splice: tuple[int, int, int] | None = None) -> tuple[Path, Path]:
    """A silent mp4 of a demo scene's pictures and a wav of its sound; ``splice`` = (scene, start_s, end_s): those
    seconds of sound come from another scene (another location)."""
    from avscene.demo.synthetic import DEMO_AUDIO_RATE_HZ, _Clip, _demo_audio, _demo_frames, write_video, write_wav

    clip = _Clip(scene, "lyon", location, 10 * location, "train")
    audio = _demo_audio(clip, SEED, seconds)
    if splice:
        other_scene, start_s, end_s = splice
        other = _demo_audio(_Clip(other_scene, "lyon", location + 1, 10 * location + 1, "train"), SEED, seconds)
        audio[:, start_s * DEMO_AUDIO_RATE_HZ : end_s * DEMO_AUDIO_RATE_HZ] = \
            other[:, start_s * DEMO_AUDIO_RATE_HZ : end_s * DEMO_AUDIO_RATE_HZ]
    write_video(folder / f"{stem}.mp4", _demo_frames(clip, SEED, W, H, FPS), seconds * FPS, FPS, W, H, gop=FPS)
    write_wav(folder / f"{stem}.wav", audio, DEMO_AUDIO_RATE_HZ)
    return folder / f"{stem}.mp4", folder / f"{stem}.wav"


@pytest.fixture(scope="module")
def splice_run(tmp_path_factory) -> Path:
    """Heads trained by `vadd eval` on a CSV store of three demo scenes (8 clips x 2 s each, debug extractors)."""
    from extract.runner import RunConfig, run_extraction

    folder = tmp_path_factory.mktemp("splice")
    rows = ["video,audio,label,split,location"]
    for label, scene in SPLICE_SCENES.items():
        for k in range(8):
            location = 100 * scene + (k // 2 if k < 6 else 10 + k)
            scene_media(folder, f"{label}-{k}", scene, location, 2)
            rows.append(f"{label}-{k}.mp4,{label}-{k}.wav,{label},{'train' if k < 6 else 'test'},{label}-{location}")
    (folder / "list.csv").write_text("\n".join(rows) + "\n")
    store = str(folder / "emb.zarr")
    run_extraction(RunConfig(data=folder / "list.csv", store=store, extractors=DEBUG_EXTRACTORS, device="cpu",
                             progress=False))
    config = VaddConfig(validation_fraction=0.34, head=HeadConfig(kind="linear"),
                        train=TrainConfig(epochs=10, batch_size=4, lr=1e-2))
    evaluate_vadd(store, config, folder / "run")
    return folder / "run"


def test_check_finds_a_6_s_splice_in_a_20_s_video_and_passes_its_twin(splice_run, tmp_path, capsys):
    """A park video whose sound is a tram's for 8-14 s. (On these tiny debug heads an airport video at a new location
    is not a fair twin: its pristine seconds already disagree.)"""
    video, spliced = scene_media(tmp_path, "spliced", 4, 5000, 20, splice=(9, 8, 14))
    assert main(["check", str(video), "--audio", str(spliced), "--heads", str(splice_run), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--chunk-seconds", "7"]) == 0
    line = capsys.readouterr().out.splitlines()[-3]
    check = json.loads((tmp_path / "out" / "check.json").read_text())
    assert check["verdict"] == "manipulated" and line.startswith("manipulated: ")
    best = max(check["segments"], key=lambda s: Segment(s["start_s"], s["end_s"], s["score"]).iou(8.0, 14.0))
    assert Segment(best["start_s"], best["end_s"], best["score"]).iou(8.0, 14.0) >= 0.5
    assert f"{best['start_s']:.1f}–{best['end_s']:.1f} s (score " in line
    assert check["probability_manipulated"] > 0.5 and check["decided_by"]["rule"] == "segments of the mismatch score"
    assert check["n_seconds"] == 20 and (tmp_path / "out" / "timeline.png").stat().st_size > 1000

    twin_video, twin_audio = scene_media(tmp_path, "twin", 4, 5000, 20)
    twin = Checker(splice_run, device="cpu").check(twin_video, twin_audio).to_dict()
    assert twin["verdict"] == "consistent" and twin["segments"] == [] and twin["probability_manipulated"] < 0.5
    assert verdict_line(twin).startswith("consistent: no segment reaches the threshold")
