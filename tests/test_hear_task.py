"""`extract hear-task`: hear-eval-kit's task layout from a manifest, folds keeping recording locations apart."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from extract.cli import main as extract_main
from extract.hear_task import location_folds
from extract.manifest import read_manifest
from extract.taxonomy import tau_recording_location
from tests.conftest import require_shared


def test_a_tau_layout_dataset_becomes_a_hear_scene_task(tiny_dataset, tmp_path, capsys):
    assert extract_main(["hear-task", "--data", str(tiny_dataset), "--out", str(tmp_path), "--name", "tiny",
                         "--sample-rates", "16000,48000", "--seconds", "2", "--folds", "2"]) == 0
    task = tmp_path / "tiny"
    assert capsys.readouterr().out.strip() == f"HEAR task: {task}"
    meta = json.loads((task / "task_metadata.json").read_text())
    assert (meta["embedding_type"], meta["prediction_type"], meta["split_mode"]) == ("scene", "multiclass",
                                                                                    "new_split_kfold")
    assert meta["splits"] == ["fold00", "fold01"] and meta["sample_rates"] == [16000, 48000] and meta["excluded"] == {}
    manifest = read_manifest(tiny_dataset)
    folds = [json.loads((task / f"{s}.json").read_text()) for s in meta["splits"]]
    assert sorted(f for fold in folds for f in fold) == sorted(f"{c.clip_id}.wav" for c in manifest.clips)
    assert all(fold[f] == [f.split("-")[0]] for fold in folds for f in fold)  # TAU stems start with the scene
    locations = [{tau_recording_location(f[:-4]) for f in fold} for fold in folds]
    assert not locations[0] & locations[1]  # a recording location never spans two folds
    vocabulary = (task / "labelvocabulary.csv").read_text().splitlines()
    assert vocabulary[0] == "idx,label" and [v.split(",")[1] for v in vocabulary[1:]] == sorted(manifest.classes)
    some = next(iter(folds[0]))
    for rate in (16000, 48000):
        wave, read_rate = sf.read(task / str(rate) / "fold00" / some, always_2d=True)
        assert read_rate == rate and wave.shape == (2 * rate, 1) and np.abs(wave).max() > 0


def test_folds_are_balanced_per_label_with_whole_locations():
    from extract.manifest import Clip

    clips = [Clip(f"bus-x-{loc}-{i}", "bus", "train", None, None) for loc, n in ((1, 3), (2, 2), (3, 1)) for i in range(n)]
    clips += [Clip(f"park-x-{loc}-{i}", "park", "train", None, None) for loc in (4, 5) for i in range(2)]
    fold_of = location_folds(clips, tau_recording_location, 2)
    bus = [fold_of[c.clip_id] for c in clips if c.label == "bus"]
    assert bus == [0, 0, 0, 1, 1, 1]  # the 3-clip location alone, the 2 and 1 together
    assert sorted(fold_of[c.clip_id] for c in clips if c.label == "park") == [0, 0, 1, 1]


def test_a_clip_that_fails_to_decode_is_listed_not_fatal(tmp_path):
    chirp = require_shared("media", "chirp_mono.wav").read_bytes()
    (tmp_path / "good.wav").write_bytes(chirp)
    (tmp_path / "good2.wav").write_bytes(chirp)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    (tmp_path / "m.csv").write_text("video,audio,label,split\n,good.wav,a,train\n,good2.wav,b,train\n,broken.wav,a,train\n")
    assert extract_main(["hear-task", "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "tasks"),
                         "--seconds", "1", "--folds", "2"]) == 0
    meta = json.loads((tmp_path / "tasks" / "avscene-scenes" / "task_metadata.json").read_text())
    assert list(meta["excluded"]) == ["broken"] and str(tmp_path / "broken.wav") in meta["excluded"]["broken"]


def test_too_few_clips_for_the_folds_is_refused(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.csv").write_text("video,audio,label,split\n,a.wav,x,train\n")
    assert extract_main(["hear-task", "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "t")]) == 2
    assert "need >= 2 folds, at least as many labelled clips (1)" in capsys.readouterr().err


@pytest.mark.slow
def test_the_42_real_tau_recordings_make_three_location_folds(tmp_path):
    audio = require_shared("tau", "audio", "MANIFEST.tsv").parent
    assert extract_main(["tau-audio-manifest", "--audio", str(audio), "--out", str(tmp_path / "data")]) == 0
    assert extract_main(["hear-task", "--data", str(tmp_path / "data" / "manifest.csv"), "--classes", "tau",
                         "--out", str(tmp_path / "tasks")]) == 0
    task = tmp_path / "tasks" / "avscene-scenes"
    folds = [json.loads((task / f"fold0{i}.json").read_text()) for i in range(3)]
    assert [len(f) for f in folds] == [15, 14, 13]
    wave, rate = sf.read(task / "32000" / "fold00" / next(iter(folds[0])))
    assert rate == 32000 and wave.shape == (320000,)
