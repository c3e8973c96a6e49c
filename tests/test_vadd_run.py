"""`vadd eval` on a small debug-extractor store, and `vadd check` on generated media of several containers."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from classify.train import TrainConfig
from extract.audio_io import iter_audio_blocks, load_audio
from avscene.errors import MediaError
from extract.taxonomy import SCENE_TO_IOV
from avscene.demo.synthetic import write_video, write_wav
from tests.conftest import DEBUG_EXTRACTORS
from vadd.check import Checker, batch_inputs, check_batch, write_timeline_png
from vadd.cli import main
from vadd.evaluate import VaddConfig, evaluate_vadd
from vadd.protocol import ProtocolItem, read_protocol_csv, write_protocol_csv

FAST = TrainConfig(epochs=5)


@pytest.fixture(scope="module")
def vadd_store(tmp_path_factory) -> tuple[Path, str]:
    """10 scenes x 7 clips x 2 s (5 train in two locations, 2 test), extracted with the debug pair."""
    from extract.runner import RunConfig, run_extraction
    from avscene.demo.synthetic import make_demo_dataset

    data = make_demo_dataset(tmp_path_factory.mktemp("vadd") / "data", clips_per_scene=7, seconds=2, seed=2,
                             width=64, height=48)
    store = str(data.parent / "emb.zarr")
    run_extraction(RunConfig(data=data, store=store, extractors=DEBUG_EXTRACTORS, device="cpu", progress=False))
    return data, store


@pytest.fixture(scope="module")
def run_dir(vadd_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "vadd-10cls"
    evaluate_vadd(vadd_store[1], VaddConfig(validation_fraction=0.4, train=FAST), out)
    return out


def test_eval_writes_a_complete_run_folder(run_dir, vadd_store):
    for name in ("metrics.json", "metrics.md", "roc.png", "protocol.csv", "validation_protocol.csv", "item_scores.csv",
                 "second_scores.csv", "segments.csv", "config.json", "heads.json", "vsc.pt", "asc.pt"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    heads = json.loads((run_dir / "heads.json").read_text())
    assert metrics["mismatch_score"]["threshold"] == heads["threshold"] == heads["rule"]["segments"]["threshold"]
    for modality in ("visual", "audio"):  # each head temperature-scaled on the validation clips, NLL not worse there
        calibration = metrics["calibration"][modality]
        assert heads[modality]["temperature"] == calibration["temperature"] > 0
        assert calibration["validation"]["nll_after"] <= calibration["validation"]["nll_before"] + 1e-9
        assert {"nll_before", "nll_after", "ece_before", "ece_after"} <= set(calibration["test"])
    assert 0 <= metrics["paper_rule"]["f1"] <= 1 and metrics["mismatch_score"]["roc_auc"] is not None
    test_items = read_protocol_csv(run_dir / "protocol.csv")
    validation_items = read_protocol_csv(run_dir / "validation_protocol.csv")
    assert len(test_items) == metrics["n_items"] == 20 and sum(i.manipulated for i in test_items) == 10
    test_clips = {i.video_clip for i in test_items}
    assert not test_clips & {i.video_clip for i in validation_items}  # the threshold never sees a test clip
    table = (run_dir / "metrics.md").read_text()
    assert "paper, TAU, real weights" in table and "79.16 %" in table
    with open(run_dir / "second_scores.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2 * len(test_items)  # 2 aligned seconds per item


def test_eval_reads_back_its_own_protocol_csv_and_runs_three_classes(run_dir, vadd_store, tmp_path):
    again = evaluate_vadd(vadd_store[1], VaddConfig(protocol=str(run_dir / "protocol.csv"), validation_fraction=0.4,
                                                    train=FAST), tmp_path / "again")
    first = json.loads((run_dir / "metrics.json").read_text())
    assert again["paper_rule"] == first["paper_rule"] and again["mismatch_score"] == first["mismatch_score"]
    three = evaluate_vadd(vadd_store[1], VaddConfig(classes="3", validation_fraction=0.4, train=FAST), tmp_path / "three")
    assert {i.video_label for i in read_protocol_csv(tmp_path / "three" / "protocol.csv")} <= {"indoor", "outdoor", "vehicle"}
    assert three["n_classes"] == 3


def test_a_protocol_csv_must_agree_with_the_store_and_the_class_count(run_dir, vadd_store, tmp_path):
    items = read_protocol_csv(run_dir / "protocol.csv")
    scene_of = {i.video_clip: i.video_label for i in items} | {i.audio_clip: i.audio_label for i in items}
    a, b = next((a, b) for a in sorted(scene_of) for b in sorted(scene_of)  # other scenes, one indoor/outdoor/vehicle class
                if scene_of[a] != scene_of[b] and SCENE_TO_IOV[scene_of[a]] == SCENE_TO_IOV[scene_of[b]])
    same_iov = [ProtocolItem(a, b, SCENE_TO_IOV[scene_of[a]], SCENE_TO_IOV[scene_of[b]], True)]
    write_protocol_csv(tmp_path / "same_iov.csv", same_iov)
    config = VaddConfig(classes="3", protocol=str(tmp_path / "same_iov.csv"), validation_fraction=0.4, train=FAST)
    with pytest.raises(ValueError, match=r"same_iov.csv: item 1: manipulated, but video and audio are both"):
        evaluate_vadd(vadd_store[1], config, tmp_path / "refused")
    wrong = [ProtocolItem(a, a, scene_of[b], scene_of[b], False)]
    write_protocol_csv(tmp_path / "wrong.csv", wrong)
    config = VaddConfig(protocol=str(tmp_path / "wrong.csv"), validation_fraction=0.4, train=FAST)
    with pytest.raises(ValueError, match=rf"wrong.csv: item 1: {a} is labelled '{scene_of[b]}'"):
        evaluate_vadd(vadd_store[1], config, tmp_path / "refused2")
    assert not (tmp_path / "refused").exists() and not (tmp_path / "refused2").exists()


def test_official_protocol_on_a_non_tau_store_names_the_missing_clips(vadd_store, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "vadd_10_pristine.txt").write_text("['airport-lisbon-1175-44106.mp4', 'airport']\n")
    (lists / "vadd_10_manipulated.txt").write_text("['bus-lyon-1-1.mp4', 'bus']\n['park-lyon-2-2.mp4', 'park']\n")
    config = VaddConfig(protocol="official", lists_dir=str(lists), validation_fraction=0.4, train=FAST)
    with pytest.raises(ValueError, match=r"3 of the 3 protocol clips are not in the store's test split .*"
                                         r"airport-lisbon-1175-44106.*fold1_evaluate"):
        evaluate_vadd(vadd_store[1], config, tmp_path / "official")


def scene_video(path: Path, scene_dir: Path, **codec) -> Path:
    """A video whose picture is one demo clip's first frames and whose soundtrack is another clip's audio."""
    from extract.video_io import read_frames

    videos = sorted((scene_dir / "video").glob("*.mp4"))
    frames = read_frames(videos[0], [0.2, 0.7, 1.2, 1.7], [(48, 48)])[(48, 48)]
    waveform, rate_hz = load_audio(sorted((scene_dir / "audio").glob("*.wav"))[0])
    fps = codec.pop("fps", 10)
    write_video(path, lambda i: frames[min(i * 2 // fps, 3)], 2 * fps, fps, 48, 48, gop=fps,
                audio=waveform[:, : 2 * rate_hz], audio_rate_hz=rate_hz, **codec)
    return path


@pytest.fixture(scope="module")
def checker(run_dir) -> Checker:
    return Checker(run_dir, device="cpu", chunk_seconds=1)


@pytest.mark.parametrize("suffix, codec", [
    (".mp4", {}),
    (".mkv", {"fps": 25}),
    (".mov", {"fps": 30}),
    (".avi", {"video_codec": "mpeg4", "audio_codec": "mp3", "fps": 15}),
    (".webm", {"video_codec": "libvpx-vp9", "audio_codec": "libopus", "fps": 24}),
])
def test_check_decodes_common_containers(checker, vadd_store, tmp_path, suffix, codec):
    path = scene_video(tmp_path / f"clip{suffix}", vadd_store[0], **codec)
    result = checker.check(path).to_dict()
    assert result["n_seconds"] == 2
    p_visual, p_audio = np.array(result["visual"]["per_second"]), np.array(result["audio_scene"]["per_second"])
    np.testing.assert_allclose(p_visual.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(np.exp(-np.array(result["mismatch"]["per_second"])), (p_visual * p_audio).sum(1), atol=1e-4)
    assert result["verdict"] == ("manipulated" if result["segments"] else "consistent")
    assert (result["mismatch"]["detection_score"] >= result["threshold"]) == bool(result["segments"])


def test_chunking_does_not_change_the_answer(run_dir, vadd_store, tmp_path):
    path = scene_video(tmp_path / "clip.mp4", vadd_store[0])
    one = Checker(run_dir, device="cpu", chunk_seconds=1).check(path)
    whole = Checker(run_dir, device="cpu", chunk_seconds=30).check(path)
    np.testing.assert_allclose(one.p_visual, whole.p_visual, atol=1e-5)
    np.testing.assert_allclose(one.p_audio, whole.p_audio, atol=1e-5)


def test_audio_blocks_concatenate_to_the_whole_file(vadd_store, tmp_path):
    wav = sorted((vadd_store[0] / "audio").glob("*.wav"))[0]
    mp4 = scene_video(tmp_path / "clip.mp4", vadd_store[0])
    for path in (wav, mp4):
        whole, rate_hz = load_audio(path)
        blocks = list(iter_audio_blocks(path, 1))
        assert all(b.shape[1] == rate_hz for b, _ in blocks[:-1]) and {r for _, r in blocks} == {rate_hz}
        np.testing.assert_array_equal(np.concatenate([b for b, _ in blocks], axis=1), whole)


def test_check_refuses_silent_short_and_non_media_files(checker, vadd_store, tmp_path):
    silent = tmp_path / "silent.mp4"
    write_video(silent, lambda i: np.zeros((48, 48, 3), np.uint8), 20, 10, 48, 48)
    with pytest.raises(MediaError, match="no audio track; pass --audio"):
        checker.check(silent)
    wav = sorted((vadd_store[0] / "audio").glob("*.wav"))[0]
    assert checker.check(silent, audio=wav).to_dict()["n_seconds"] == 2  # --audio supplies the sound
    short = tmp_path / "short.mp4"
    write_video(short, lambda i: np.zeros((48, 48, 3), np.uint8), 5, 10, 48, 48, audio=np.zeros((1, 24_000), np.float32))
    with pytest.raises(MediaError, match="too short"):
        checker.check(short)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(MediaError, match="notes.mp4: not a readable media file"):
        checker.check(text)
    notes = tmp_path / "notes.txt"  # FFmpeg's tty demuxer opens any .txt as 'video': refused, with or without --audio
    notes.write_text("".join(f"line {i} of a user's notes\n" for i in range(200)))
    for audio in (None, wav):
        with pytest.raises(MediaError, match="notes.txt: not a video: FFmpeg reads it as text"):
            checker.check(notes, audio=audio)


def test_batch_writes_one_csv_row_per_video_and_keeps_going(checker, vadd_store, tmp_path):
    folder = tmp_path / "videos"
    scene_video(folder / "a.mp4", vadd_store[0])
    scene_video(folder / "b.mkv", vadd_store[0], fps=25)
    (folder / "broken.avi").write_text("nope")
    write_wav(folder / "ignored.wav", np.zeros((1, 100), np.float32), 1000)
    (folder / "c.mts").write_bytes((folder / "a.mp4").read_bytes())  # what the decoder opens counts, not the extension
    rows = check_batch(checker, batch_inputs(folder), tmp_path / "out.csv", progress=False)
    assert [Path(r["video"]).name for r in rows] == ["a.mp4", "b.mkv", "broken.avi", "c.mts", "ignored.wav"]
    assert [r["error"][:8] for r in rows] == ["", "", "skipped:", "", "skipped:"]
    assert "ignored.wav: no video stream" in rows[-1]["error"]
    with open(tmp_path / "out.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 5
    listing = tmp_path / "list.csv"
    listing.write_text("video,audio\nvideos/a.mp4,\n")
    assert batch_inputs(listing) == [(tmp_path / "videos" / "a.mp4", None)]


def test_cli_check_writes_json_and_png(run_dir, vadd_store, tmp_path, capsys):
    path = scene_video(tmp_path / "clip.mp4", vadd_store[0])
    assert main(["check", str(path), "--heads", str(run_dir), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"json: {tmp_path / 'out' / 'check.json'}"
    assert out[0].startswith(f"heads: {run_dir} (SYNTHETIC dataset {vadd_store[0]}; test split: VSC acc ")
    assert "verdict-rule F1" in out[0] and "paper" not in out[0]  # the figure of the rule that makes the verdict
    assert "their verdict on a real video means nothing" in out[1]  # the demo generator's card travelled here
    check = json.loads((tmp_path / "out" / "check.json").read_text())
    assert check["n_seconds"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert check["heads"] == {
        "run": str(run_dir), "store": vadd_store[1], "dataset": str(vadd_store[0]), "synthetic_dataset": True,
        "class_set": metrics["class_set"],
        "extractors": {"visual": ["debug_visual"], "audio": ["debug_audio"]},
        "test_split": {"vsc_clip_accuracy": metrics["classification_clip_accuracy"]["vsc"],
                       "asc_clip_accuracy": metrics["classification_clip_accuracy"]["asc"],
                       "verdict_rule": "segments of the mismatch score", "verdict_rule_f1": metrics["mismatch_score"]["f1"],
                       "vadd_f1_paper_rule": metrics["paper_rule"]["f1"], "vadd_roc_auc": metrics["mismatch_score"]["roc_auc"],
                       "n_items": metrics["n_items"], "n_manipulated": metrics["n_manipulated"]}}
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 1000
    assert main(["check", str(tmp_path / "missing.mp4"), "--heads", str(run_dir), "--device", "cpu"]) == 2


def test_heads_keep_their_dataset_card_without_the_store(run_dir, vadd_store, tmp_path):
    """`vadd eval` writes the dataset (folder, synthetic) into heads.json: a moved store does not lose it; a run
    folder written before that reads it from the store."""
    import shutil

    from vadd.check import heads_provenance

    heads = json.loads((run_dir / "heads.json").read_text())
    assert heads["dataset"]["folder"] == str(vadd_store[0]) and heads["dataset"]["synthetic"] is True
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "store": str(tmp_path / "gone.zarr")}))
    assert heads_provenance(moved, heads)["synthetic_dataset"] is True
    older = {k: v for k, v in heads.items() if k != "dataset"}
    assert heads_provenance(run_dir, older)["synthetic_dataset"] is True  # from the store's card
    assert heads_provenance(moved, older)["synthetic_dataset"] is None  # neither: unknown, said as such


def test_timeline_png_for_a_long_result(checker, tmp_path):
    from vadd.check import CheckResult

    from vadd.rule import VerdictRule
    from vadd.segments import SegmentParams

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 120, 10)) * 3
    logits[1, 30:50] = np.roll(logits[0, 30:50], 1, axis=-1)  # 20 s where the heads answer differently
    result = CheckResult("long.mp4", "long.mp4", checker.heads["visual"].classes, logits[0], logits[1],
                         {"visual": 1.0, "audio": 1.0}, VerdictRule(SegmentParams(3.0, 3, 3), 1.0, -3.0), "test")
    assert result.segments and result.to_dict()["verdict"] == "manipulated"
    write_timeline_png(tmp_path / "t.png", result)
    assert (tmp_path / "t.png").stat().st_size > 1000


@pytest.mark.parametrize("chunk_seconds", [1, 3, 7, 25])
def test_head_windows_are_fixed_in_time_whatever_the_chunk_size(chunk_seconds):
    from vadd.check import HeadWindows

    seen = []

    def score(features):
        x = features["e"]
        seen.append((int(x[0, 0]), len(x)))
        return np.repeat(x[:, :1], 2, axis=1)

    windows = HeadWindows(10, score)
    seconds = np.arange(25, dtype=np.float32)[:, None].repeat(3, axis=1)
    for start in range(0, 25, chunk_seconds):
        windows.add({"e": seconds[start : start + chunk_seconds]})
    out = windows.finish()
    assert seen == [(0, 10), (10, 10), (20, 5)]
    np.testing.assert_array_equal(out[:, 0], np.arange(25))


def test_vadd_eval_registers_its_heads_for_check(run_dir, tmp_path):
    """`vadd check` finds its default heads through the registry `vadd eval` and the demo write, not a fixed path."""
    from vadd.check import default_heads_dir, heads_registry, register_heads

    assert not heads_registry().exists()  # the tests' own registry (conftest), never the user's
    with pytest.raises(FileNotFoundError, match="no VADD heads registered"):
        default_heads_dir()
    register_heads(run_dir)
    assert default_heads_dir() == run_dir.resolve()
    register_heads(tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match="holds no heads.json"):
        default_heads_dir()


def test_a_truncated_file_is_judged_in_part_and_says_so(run_dir, vadd_store, tmp_path, capsys):
    """6 s of video cut half-way through its bytes: the check judges what is there and says how much of the file that is."""
    from extract.video_io import read_frames

    videos = sorted((vadd_store[0] / "video").glob("*.mp4"))
    frames = read_frames(videos[0], [0.2, 0.7, 1.2, 1.7], [(48, 48)])[(48, 48)]
    waveform, rate_hz = load_audio(sorted((vadd_store[0] / "audio").glob("*.wav"))[0])
    whole = tmp_path / "whole.mkv"
    write_video(whole, lambda i: frames[i % 4], 60, 10, 48, 48, gop=10, audio=np.tile(waveform[:, : 2 * rate_hz], 3),
                audio_rate_hz=rate_hz)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["check", str(cut), "--heads", str(run_dir), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    warning = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    coverage = json.loads((tmp_path / "out" / "check.json").read_text())["coverage"]
    assert coverage["partial"] and abs(coverage["duration_s"] - 6.0) < 0.1 and 1 <= coverage["seconds_covered"] < 6
    assert "truncated" in coverage["missing"]
    assert warning == [f"warning: judged {coverage['seconds_covered']} s of the file's {coverage['duration_s']:.2f} s "
                       f"(seconds 0-{coverage['seconds_covered'] - 1}): {coverage['missing']}"]


def test_outputs_of_two_files_never_share_a_folder(tmp_path):
    from vadd.check import output_key

    keys = {output_key(tmp_path / "clip.mp4"), output_key(tmp_path / "clip.mov"), output_key(tmp_path / "b" / "clip.mp4")}
    assert len(keys) == 3 and all(k.startswith("clip.") for k in keys)


def test_cli_batch_names_the_skipped_files_and_counts_partial_videos(run_dir, vadd_store, tmp_path, capsys):
    folder = tmp_path / "videos"
    scene_video(folder / "a.ts", vadd_store[0])  # MPEG-TS: taken by probing, whatever the extension says
    write_wav(folder / "notes.wav", np.zeros((1, 100), np.float32), 1000)
    out = tmp_path / "batch.csv"
    assert main(["check", "--batch", str(folder), "--heads", str(run_dir), "--out", str(out), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"skipped {folder / 'notes.wav'}: no video stream (only audio streams)" in lines
    assert "1 videos, 1 files skipped (not a video the decoder opens), 0 failed, 0 judged in part" in lines[-2]
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["n_seconds"] == "2" and rows[0]["seconds_covered"] == "2" and rows[0]["coverage_missing"] == ""
