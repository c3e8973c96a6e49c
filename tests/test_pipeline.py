"""Extraction end to end with the debug extractors: store contents, resume, kill -9, shards, bad media."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from extract.runner import RunConfig, run_extraction
from extract.store import DONE, EmbeddingStore, store_ready
DEBUG_EXTRACTORS = ("debug_visual", "debug_audio")

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "extract", *args], cwd=REPO, capture_output=True, text=True, **kw)


def assert_same_store(a: str, b: str) -> None:
    sa, sb = EmbeddingStore.open(a), EmbeddingStore.open(b)
    assert list(sa.clips.ids) == list(sb.clips.ids)
    for name in DEBUG_EXTRACTORS:
        for array in ("embeddings", "valid", "status"):
            x = sa.root[f"extractors/{name}/original/{array}"][:]
            y = sb.root[f"extractors/{name}/original/{array}"][:]
            np.testing.assert_array_equal(x, y, err_msg=f"{name}/{array}")


def test_store_contents(tiny_store):
    store = EmbeddingStore.open(tiny_store)
    clips = store.clips
    assert len(clips) == 30 and set(clips.n_seconds) == {3} and store.seconds_max == 3
    assert set(clips.splits) == {"train", "test"}
    for name in DEBUG_EXTRACTORS:
        attrs = store.group_attrs(name)
        assert attrs["complete"] is True and attrs["weights"] == "builtin-seeded"
        assert (store.status(name) == DONE).all()
        valid = store.root[f"extractors/{name}/original/valid"][:]
        assert valid.all()
        emb = store.root[f"extractors/{name}/original/embeddings"][:]
        assert np.isfinite(emb).all() and np.abs(emb).sum(-1).min() > 0


def test_rerun_does_nothing_and_keeps_store(tiny_dataset, tiny_store, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(tiny_store, copy)
    summary = run_extraction(RunConfig(data=tiny_dataset, store=str(copy), extractors=DEBUG_EXTRACTORS,
                                       device="cpu", progress=False))
    assert sum(summary.done.values()) == 0 and summary.done_earlier["debug_audio"] + summary.failed_earlier["debug_audio"] == 30
    assert_same_store(str(copy), tiny_store)


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted(tiny_dataset, tiny_store, tmp_path):
    store = str(tmp_path / "killed.zarr")
    args = ["run", "--data", str(tiny_dataset), "--store", store, "--extractors", ",".join(DEBUG_EXTRACTORS),
            "--device", "cpu", "--clips-per-chunk", "8", "--no-progress", "--decode-workers", "1"]
    finished = 0
    for _ in range(2):  # kill each run as soon as it has written one more block: always mid-run
        proc = subprocess.Popen([sys.executable, "-m", "extract", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while finished_clips(store, "debug_audio") <= finished and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = finished_clips(store, "debug_audio")
    assert 0 < finished < len(EmbeddingStore.open(tiny_store).clips.ids), "the kills did not interrupt the run"
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert_same_store(store, tiny_store)


def finished_clips(store: str, name: str) -> int:
    """Clips done or failed in ``store`` for ``name`` (0 while the store or its arrays are not created yet)."""
    if not store_ready(store):
        return 0
    s = EmbeddingStore.open(store)
    if not s.has_group(name) or not s.group_attrs(name).get("arrays_ready"):
        return 0
    return int((s.status(name) != 0).sum())


@pytest.mark.slow
def test_two_shards_in_parallel_equal_single_run(tiny_dataset, tiny_store, tmp_path):
    store = str(tmp_path / "sharded.zarr")
    base = ["run", "--data", str(tiny_dataset), "--store", store, "--extractors", ",".join(DEBUG_EXTRACTORS),
            "--device", "cpu", "--clips-per-chunk", "8", "--no-progress", "--decode-workers", "1"]
    procs = [subprocess.Popen([sys.executable, "-m", "extract", *base, "--shard", f"{i}/2"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 0)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert_same_store(store, tiny_store)
    assert EmbeddingStore.open(store).group_attrs("debug_visual")["complete"] is True


def test_corrupt_media_recorded_per_clip_and_rest_extracted(tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    videos = sorted((data / "video").glob("*.mp4"))
    audios = sorted((data / "audio").glob("*.wav"))
    videos[0].write_bytes(b"this is not a video")
    truncated = videos[1].read_bytes()
    videos[1].write_bytes(truncated[: len(truncated) // 3])
    audios[2].write_bytes(audios[2].read_bytes()[:60])  # header only, no samples
    store = str(tmp_path / "s.zarr")
    summary = run_extraction(RunConfig(data=data, store=store, extractors=DEBUG_EXTRACTORS, device="cpu",
                                       clips_per_chunk=8, progress=False))
    s = EmbeddingStore.open(store)
    failed_visual = {c for c, _, _ in s.errors("debug_visual")}
    failed_audio = {c for c, _, _ in s.errors("debug_audio")}
    assert videos[0].stem in failed_visual
    assert audios[2].stem in failed_audio
    for clip, stage, message in s.errors("debug_visual") + s.errors("debug_audio"):
        assert message, f"{clip}: empty error message"
    assert summary.done["debug_audio"] >= 28 and summary.done["debug_visual"] >= 27
    assert s.group_attrs("debug_audio")["complete"] is True
    assert (s.status("debug_audio") != 0).all()


def test_cli_bad_arguments_give_clear_errors(tiny_dataset, tmp_path):
    out = run_cli("run", "--data", str(tiny_dataset), "--store", str(tmp_path / "x.zarr"), "--extractors", "nope")
    assert out.returncode == 2 and "unknown extractor 'nope'" in out.stderr
    out = run_cli("run", "--data", str(tiny_dataset), "--extractors", "debug_audio", "--shard", "3/2")
    assert out.returncode == 2 and "--shard" in out.stderr
    out = run_cli("run", "--data", str(tmp_path / "missing"), "--extractors", "debug_audio",
                  "--store", str(tmp_path / "y.zarr"))
    assert out.returncode == 2 and "missing" in out.stderr


def test_missing_weights_fail_before_touching_the_store(tiny_dataset, tmp_path):
    out = run_cli("run", "--data", str(tiny_dataset), "--store", str(tmp_path / "w.zarr"),
                  "--extractors", "mobilenet_v2.imagenet", env={**os.environ, "AVSCENE_WEIGHTS": str(tmp_path / "none")})
    assert out.returncode == 2
    assert "mobilenet_v2-b0353104.pth" in out.stderr and "weights import" in out.stderr
    assert not (tmp_path / "w.zarr").exists()


def test_real_tau_wavs_through_a_symlinked_audio_folder(tmp_path):
    """The real-audio check's layout: a CSV manifest over a symlink to the real wavs; paths stay relative."""
    from extract.tau_audio import write_tau_audio_manifest
    from tests.conftest import require_shared

    manifest = write_tau_audio_manifest(require_shared("tau", "audio"), tmp_path / "real")
    lines = manifest.read_text().splitlines()
    (tmp_path / "real" / "three.csv").write_text("\n".join([lines[0], *lines[1:4]]) + "\n")
    store = str(tmp_path / "s.zarr")
    run_extraction(RunConfig(data=tmp_path / "real" / "three.csv", store=store, extractors=("debug_audio",),
                             device="cpu", progress=False))
    opened = EmbeddingStore.open(store)
    assert list(opened.clips.audio_paths) == [line.split(",")[1] for line in lines[1:4]]
    assert list(opened.clips.n_seconds) == [10, 10, 10]
    assert (opened.status("debug_audio") == DONE).all()
