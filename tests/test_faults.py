"""Fault tolerance of extraction and the store: kill -9 at random moments, concurrent shard writers under
SLURM-array and torchrun environments (one store, also through a file:// URL), a generated bad-media corpus,
damaged or foreign stores, heads on other fingerprints, manifest paths leaving the data root."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from extract.runner import RunConfig, parse_shard, run_extraction, shard_from_env
from extract.store import DONE, FAILED, EmbeddingStore, FingerprintMismatchError, StoreError
from test_pipeline import DEBUG_EXTRACTORS, REPO, assert_same_store, finished_clips

N_TINY_CLIPS = 30  # the tiny_dataset fixture: 10 scenes x 3 clips


def extract_cmd(data: Path, store: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "extract", "run", "--data", str(data), "--store", store,
            "--extractors", ",".join(DEBUG_EXTRACTORS), "--device", "cpu", "--clips-per-chunk", "4",
            "--no-progress", "--decode-workers", "1", *extra]


def run_parallel(commands: list[list[str]], envs: list[dict[str, str]] | None = None) -> list[str]:
    """Start every command at once, wait for all, require exit 0; returns their stdouts."""
    envs = envs or [dict(os.environ)] * len(commands)
    procs = [subprocess.Popen(c, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c, e in zip(commands, envs)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


def counts(outputs: list[str], kind: str) -> dict[str, int]:
    """Sum the runner's ``<name>: done now W, failed now X, done earlier Y, failed earlier Z`` lines over processes
    (``skipped``: done or failed earlier)."""
    pattern = r"^(\S+): done now (\d+), failed now (\d+), done earlier (\d+), failed earlier (\d+)"
    total: dict[str, int] = {}
    for out in outputs:
        for name, *values in re.findall(pattern, out, re.M):
            done, failed, done_earlier, failed_earlier = (int(v) for v in values)
            value = {"done": done, "failed": failed, "skipped": done_earlier + failed_earlier}[kind]
            total[name] = total.get(name, 0) + value
    return total


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- shards from the environment
@pytest.mark.parametrize(
    "env, expected",
    [
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, (3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"}, (0, 2)),
        ({"RANK": "2", "WORLD_SIZE": "8", "LOCAL_RANK": "0"}, (2, 8)),
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "6"}, (5, 6)),
        # an array job whose tasks also see torchrun variables: the array decides
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "0", "WORLD_SIZE": "1"}, (1, 2)),
    ],
)
def test_shard_auto_reads_slurm_and_torchrun_environments(env, expected):
    assert shard_from_env(env) == expected
    assert parse_shard("auto", env) == expected


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "none of SLURM_ARRAY_TASK_ID"),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4"}, "contiguous"),
        # --array=3,7 (a resubmitted subset): task 3 would silently become shard 0 of 2
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "3",
          "SLURM_ARRAY_TASK_MAX": "7"}, "contiguous"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "not integers"),
    ],
)
def test_shard_auto_refuses_missing_or_inconsistent_environments(env, message):
    with pytest.raises(ValueError, match=message):
        parse_shard("auto", env)


# ----------------------------------------------------------------------------- kill -9 and concurrent writers
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_of_two_shards_at_random_moments_then_rerun_equals_uninterrupted(seed, tiny_dataset, tiny_store, tmp_path):
    """Each shard is killed (SIGKILL, no cleanup) at a random point of the run's progress: once the store holds a
    random number of finished clips, so every trial interrupts a running extraction (a timer could fire too late)."""
    rng = random.Random(seed)
    store = str(tmp_path / "killed.zarr")
    procs = [subprocess.Popen(extract_cmd(tiny_dataset, store, "--shard", f"{i}/2"), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    targets = sorted(rng.sample(range(1, N_TINY_CLIPS // 2), 2))  # finished clips before each kill
    for proc, target in zip(rng.sample(procs, 2), targets):
        deadline = time.monotonic() + 300
        while finished_clips(store, "debug_audio") < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
    for proc in procs:
        proc.wait()
    finished_before = {name: finished_clips(store, name) for name in DEBUG_EXTRACTORS}
    assert any(finished_before[name] < N_TINY_CLIPS for name in DEBUG_EXTRACTORS), "killed after the run had ended"
    outputs = run_parallel([extract_cmd(tiny_dataset, store, "--shard", f"{i}/2") for i in range(2)])
    for name in DEBUG_EXTRACTORS:  # nothing lost, nothing done twice
        assert counts(outputs, "skipped")[name] == finished_before[name]
        assert counts(outputs, "done")[name] == N_TINY_CLIPS - finished_before[name]
    assert_same_store(store, tiny_store)
    assert all(EmbeddingStore.open(store).group_attrs(n)["complete"] for n in DEBUG_EXTRACTORS)


@pytest.mark.slow
def test_four_torchrun_ranks_write_one_store_through_a_file_url(tiny_dataset, tiny_store, tmp_path):
    url = f"file://{tmp_path}/ranks.zarr"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4", "-m", "extract"]
    outputs = run_parallel([torchrun + extract_cmd(tiny_dataset, url, "--shard", "auto")[3:]])
    assert counts(outputs, "done") == {n: N_TINY_CLIPS for n in DEBUG_EXTRACTORS}  # each clip by one rank
    assert_same_store(url, tiny_store)
    assert all(EmbeddingStore.open(url).group_attrs(n)["complete"] for n in DEBUG_EXTRACTORS)


@pytest.mark.slow
def test_slurm_array_tasks_write_one_store(tiny_dataset, tiny_store, tmp_path):
    store = str(tmp_path / "array.zarr")
    envs = [{**os.environ, "SLURM_ARRAY_TASK_ID": str(t), "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "2",
             "SLURM_ARRAY_JOB_ID": "42"} for t in (2, 1)]
    outputs = run_parallel([extract_cmd(tiny_dataset, store, "--shard", "auto")] * 2, envs)
    assert counts(outputs, "done") == {n: N_TINY_CLIPS for n in DEBUG_EXTRACTORS}
    assert_same_store(store, tiny_store)


def test_store_whose_creation_was_killed_is_resumed(tiny_dataset, tiny_store, tmp_path):
    store = tmp_path / "half.zarr"
    shutil.copytree(tiny_store, store)
    shutil.rmtree(store / "extractors")
    (store / "extractors").mkdir()
    shutil.copy(Path(tiny_store) / "extractors" / "zarr.json", store / "extractors" / "zarr.json")
    root_meta = json.loads((store / "zarr.json").read_text())
    root_meta["attributes"] = {}  # the root attributes are written last by create()
    (store / "zarr.json").write_text(json.dumps(root_meta))
    run_extraction(RunConfig(data=tiny_dataset, store=str(store), extractors=DEBUG_EXTRACTORS, device="cpu",
                             clips_per_chunk=8, progress=False))
    assert_same_store(str(store), tiny_store)


# ----------------------------------------------------------------------------- bad media
def _bad_media_corpus(root: Path) -> tuple[Path, dict[str, tuple[str, str, int | None]]]:
    """Write the corpus and its CSV manifest; returns the manifest and, per clip id, the expected
    (visual outcome, audio outcome, n_seconds): outcome "done", "failed" or "any"."""
    from avscene.demo.synthetic import write_video, write_wav
    from tests.timestamp_media import timestamp_frame

    rng = np.random.default_rng(0)
    rows, expected = [], {}

    def video(name: str, seconds: float, audio: bool = False) -> str:
        n = round(seconds * 10)
        track = (rng.uniform(-0.3, 0.3, (2, round(seconds * 48_000))).astype(np.float32) if audio else None)
        write_video(root / f"{name}.mp4", lambda i: timestamp_frame(i, 64, 48), n, 10, 64, 48, gop=10, audio=track)
        return f"{name}.mp4"

    def wav(name: str, seconds: float, rate: int = 48_000, channels: int = 2, subtype: str = "PCM_16") -> str:
        n = round(seconds * rate)
        write_wav(root / f"{name}.wav", rng.uniform(-0.5, 0.5, (channels, n)).astype(np.float32), rate, subtype)
        return f"{name}.wav"

    def add(name: str, video_file: str, audio_file: str, outcome: tuple[str, str, int | None]) -> None:
        rows.append((video_file, audio_file))
        expected[name] = outcome

    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        add(f"fmt_{subtype}", video(f"fmt_{subtype}", 3), wav(f"fmt_{subtype}", 3, subtype=subtype), ("done", "done", 3))
    add("mono_16k", video("mono_16k", 3), wav("mono_16k", 3, rate=16_000, channels=1), ("done", "done", 3))
    add("six_ch_44k", video("six_ch_44k", 3), wav("six_ch_44k", 3, rate=44_100, channels=6, subtype="PCM_24"),
        ("done", "done", 3))
    add("short_2s5", video("short_2s5", 2.5), wav("short_2s5", 2.5), ("done", "done", 2))
    add("long_12s", video("long_12s", 12), wav("long_12s", 12), ("done", "done", 12))
    add("own_track", video("own_track", 3, audio=True), "", ("done", "done", 3))
    add("café-東京-ñ", video("café-東京-ñ", 3), wav("café-東京-ñ", 3), ("done", "done", 3))
    add("zero_samples", video("zero_samples", 3), wav("zero_samples", 0), ("done", "failed", 3))
    add("48_samples", video("48_samples", 3), wav("48_samples", 0.001), ("failed", "failed", 0))
    add("no_audio_stream", video("no_audio_stream", 3), "", ("done", "failed", 3))
    truncated = video("truncated", 3, audio=True)
    data = (root / truncated).read_bytes()
    (root / truncated).write_bytes(data[: len(data) * 2 // 5])
    add("truncated", truncated, "", ("any", "any", None))
    (root / "not_media.wav").write_text("this is a text file, not audio\n")
    add("not_media", video("not_media", 3), "not_media.wav", ("done", "failed", 3))
    (root / "not_media_video.mp4").write_text("neither is this a video\n")
    add("not_media_video", "not_media_video.mp4", wav("not_media_video", 3), ("failed", "done", 3))
    (root / "tty_notes.txt").write_text("".join(f"line {i} of a user's notes\n" for i in range(200)))  # tty demuxer
    add("tty_notes", "tty_notes.txt", wav("tty_notes", 3), ("failed", "done", 3))
    from PIL import Image

    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(root / "still_image.png")
    add("still_image", "still_image.png", wav("still_image", 3), ("failed", "done", 3))
    unreadable = root / "unreadable.wav"
    unreadable.write_bytes((root / "fmt_PCM_16.wav").read_bytes())
    unreadable.chmod(0)
    if os.access(unreadable, os.R_OK):  # root reads anything: a folder with the file's name is unreadable as audio
        unreadable.chmod(0o644)
        unreadable.unlink()
        unreadable.mkdir()
    add("unreadable", video("unreadable", 3), "unreadable.wav", ("done", "failed", 3))

    manifest = root / "manifest.csv"
    lines = ["video,audio,label,split"] + [f"{v},{a},park,train" for v, a in rows]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest, expected


@pytest.fixture
def bad_media(tmp_path):
    manifest, expected = _bad_media_corpus(tmp_path / "corpus")
    yield manifest, expected
    for path in manifest.parent.iterdir():  # let pytest remove the folder afterwards
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_bad_media_corpus_extracts_or_records_clear_per_clip_errors(bad_media, tmp_path):
    manifest, expected = bad_media
    store = str(tmp_path / "bad.zarr")
    summary = run_extraction(RunConfig(data=manifest, store=store, extractors=DEBUG_EXTRACTORS, device="cpu",
                                       clips_per_chunk=4, progress=False))
    s = EmbeddingStore.open(store)
    row = {c: i for i, c in enumerate(s.clips.ids)}
    assert set(row) == set(expected)
    for name, modality in zip(DEBUG_EXTRACTORS, ("visual", "audio")):
        assert s.group_attrs(name)["complete"] is True
        status = s.status(name)
        valid = s.root[f"extractors/{name}/original/valid"][:]
        embeddings = s.root[f"extractors/{name}/original/embeddings"][:]
        errors = {clip: (stage, message) for clip, stage, message in s.errors(name)}
        for clip, outcome in expected.items():
            want = outcome[0] if modality == "visual" else outcome[1]
            i, n_seconds = row[clip], outcome[2]
            got = {DONE: "done", FAILED: "failed"}[int(status[i])]
            assert want in (got, "any"), f"{name} / {clip}: {got}, expected {want} ({errors.get(clip)})"
            if got == "failed":
                stage, message = errors[clip]
                assert stage and clip in message, f"{name} / {clip}: the error does not name the file: {message}"
                assert len(set(message.split("; "))) == len(message.split("; ")), f"repeated reason: {message}"
                assert not valid[i].any()
            else:
                k = int(s.clips.n_seconds[i]) if n_seconds is None else n_seconds
                assert valid[i, :k].all() and not valid[i, k:].any(), f"{name} / {clip}"
                assert np.isfinite(embeddings[i, :k]).all() and np.abs(embeddings[i, :k]).sum() > 0
    assert summary.failed["debug_audio"] >= 5 and summary.done["debug_visual"] >= 15


def test_bad_media_does_not_change_the_good_clips(bad_media, tmp_path):
    manifest, expected = bad_media
    good = [c for c, (v, a, _) in expected.items() if v == a == "done"]
    good_manifest = manifest.parent / "good.csv"
    lines = manifest.read_text(encoding="utf-8").splitlines()
    good_manifest.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if Path(ln.split(",")[0]).stem in good]) + "\n",
                             encoding="utf-8")
    stores = {}
    for label, path in (("all", manifest), ("good", good_manifest)):
        stores[label] = str(tmp_path / f"{label}.zarr")
        run_extraction(RunConfig(data=path, store=stores[label], extractors=DEBUG_EXTRACTORS, device="cpu",
                                 clips_per_chunk=4, progress=False))
    everything, alone = EmbeddingStore.open(stores["all"]), EmbeddingStore.open(stores["good"])
    rows = [list(everything.clips.ids).index(c) for c in alone.clips.ids]
    t = alone.seconds_max
    for name in DEBUG_EXTRACTORS:
        a = everything.root[f"extractors/{name}/original/embeddings"][:][rows, :t]
        b = alone.root[f"extractors/{name}/original/embeddings"][:]
        np.testing.assert_array_equal(a, b, err_msg=name)


# ----------------------------------------------------------------------------- damaged and foreign stores
def _chunk_files(store: Path, array: str) -> list[Path]:
    return sorted(p for p in (store / array / "c").rglob("*") if p.is_file())


@pytest.mark.parametrize("array", ["embeddings", "status"])
def test_corrupted_chunk_gives_a_clear_error_and_nothing_is_overwritten(array, tiny_dataset, tiny_store, tmp_path):
    store = tmp_path / "damaged.zarr"
    shutil.copytree(tiny_store, store)
    chunk = _chunk_files(store, f"extractors/debug_visual/original/{array}")[0]
    chunk.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(chunk.stat().st_size)))
    before = snapshot(store)
    with pytest.raises(StoreError, match=f"debug_visual/original/{array}.*damaged"):
        EmbeddingStore.open(str(store)).load_split(["debug_visual"], None)
    rerun = RunConfig(data=tiny_dataset, store=str(store), extractors=DEBUG_EXTRACTORS, device="cpu", progress=False)
    if array == "status":  # the runner reads status to find pending blocks: it stops with the same error
        with pytest.raises(StoreError, match="damaged"):
            run_extraction(rerun)
    else:  # every block is done: a rerun reads no embeddings and must leave the damaged chunk alone
        assert sum(run_extraction(rerun).done.values()) == 0
    assert snapshot(store) == before


def test_store_of_another_extractor_version_is_refused_untouched(tiny_dataset, tiny_store, tmp_path):
    store = tmp_path / "old_version.zarr"
    shutil.copytree(tiny_store, store)
    meta_path = store / "extractors" / "debug_audio" / "original" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["spec"]["version"] = "0"  # written by an earlier version of the extractor
    meta["attributes"]["fingerprint"] = "0123456789abcdef"
    meta_path.write_text(json.dumps(meta))
    before = snapshot(store)
    with pytest.raises(FingerprintMismatchError, match="debug_audio.*0123456789abcdef.*--overwrite"):
        run_extraction(RunConfig(data=tiny_dataset, store=str(store), extractors=DEBUG_EXTRACTORS, device="cpu",
                                 progress=False))
    assert snapshot(store) == before


def test_store_of_another_schema_version_is_refused_untouched(tiny_dataset, tiny_store, tmp_path):
    store = tmp_path / "other_schema.zarr"
    shutil.copytree(tiny_store, store)
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = 99
    (store / "zarr.json").write_text(json.dumps(meta))
    before = snapshot(store)
    out = subprocess.run(extract_cmd(tiny_dataset, str(store)), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "schema_version 99" in out.stderr and "another avscene version" in out.stderr
    assert snapshot(store) == before


def test_head_refuses_a_store_with_other_fingerprints(tiny_store, tmp_path):
    from classify.data import load_clips
    from classify.heads import HeadConfig
    from classify.train import TrainConfig, train_head

    head = train_head(load_clips(EmbeddingStore.open(tiny_store), ["debug_visual"], "train", 10), HeadConfig(),
                      TrainConfig(epochs=1))
    other = tmp_path / "other.zarr"
    shutil.copytree(tiny_store, other)
    meta_path = other / "extractors" / "debug_visual" / "original" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["fingerprint"] = "feedfacefeedface"
    meta_path.write_text(json.dumps(meta))
    test = load_clips(EmbeddingStore.open(str(other)), ["debug_visual"], "test", 10)
    with pytest.raises(ValueError, match="debug_visual.*feedfacefeedface.*re-train"):
        head.predict_proba(test)


def test_tau_paths_leaving_the_data_root_are_refused_before_any_store_exists(tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    meta = data / "meta.csv"
    lines = meta.read_text().splitlines()
    lines[1] = lines[1].replace("video/", "video/../../", 1)
    meta.write_text("\n".join(lines) + "\n")
    store = tmp_path / "never.zarr"
    out = subprocess.run(extract_cmd(data, str(store)), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "escapes the data root" in out.stderr and "meta.csv:2" in out.stderr
    assert not store.exists()


def test_a_csv_manifest_may_name_media_anywhere_absolute_relative_or_symlinked(tiny_dataset, tmp_path):
    """A user's manifest names media on another disk (absolute, ``..``) and through symlinks; all are extracted."""
    videos = sorted((tiny_dataset / "video").glob("*.mp4"))[:3]
    other_disk = tmp_path / "other_disk"
    other_disk.mkdir()
    for v in videos:
        shutil.copy(v, other_disk / v.name)
        shutil.copy(tiny_dataset / "audio" / f"{v.stem}.wav", other_disk / f"{v.stem}.wav")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "linked.mp4").symlink_to(other_disk / videos[2].name)
    (folder / "linked.wav").symlink_to(other_disk / f"{videos[2].stem}.wav")
    a, b = (other_disk / v.name for v in videos[:2])
    manifest = folder / "manifest.csv"
    manifest.write_text("video,audio,label,split\n"
                        f"{a},{a.with_suffix('.wav')},park,train\n"
                        f"../other_disk/{b.name},../other_disk/{b.stem}.wav,park,train\n"
                        "linked.mp4,linked.wav,bus,test\n")
    store = str(tmp_path / "mine.zarr")
    out = subprocess.run(extract_cmd(manifest, store), cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    s = EmbeddingStore.open(store)
    assert (s.status("debug_visual") == DONE).all() and (s.status("debug_audio") == DONE).all()
    assert s.clips.video_paths[0] == str(other_disk / videos[0].name) and s.clips.video_paths[2] == "linked.mp4"


def test_a_missing_data_path_is_named_as_missing(tmp_path):
    out = subprocess.run(extract_cmd(tmp_path / "missing" / "folder", str(tmp_path / "s.zarr")), cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "missing/folder: no such file or folder" in out.stderr


def test_a_model_error_fails_only_the_clips_that_cause_it():
    """A forward pass that raises (out of memory, a refused shape) marks its clip failed at stage ``model``;
    the other clips of the block, batched with it, are embedded as if it were not there."""
    from extract.decode_plan import DecodedClip, audio_format
    from extract.extractor import InferenceOptions, create_extractor
    from extract.runner import embed_block

    extractor = create_extractor("debug_audio", options=InferenceOptions(batch_size=4))
    key, real_embed = audio_format(extractor.spec), extractor.embed

    def embed(batch: np.ndarray) -> np.ndarray:
        if (batch[:, 0, 0] == 7.0).any():
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_embed(batch)

    extractor.embed = embed  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    spec = extractor.spec.audio
    windows = [rng.uniform(-1, 1, (n, 1 if spec.channels == "mono" else 2, spec.window_samples)).astype(np.float32) for n in (3, 2, 4)]
    windows[1][1, 0, 0] = 7.0
    decoded = [DecodedClip(f"c{i}", audio={key: w}) for i, w in enumerate(windows)]
    result = embed_block(extractor, decoded, seconds_max=5)
    assert list(result.status) == [DONE, FAILED, DONE]
    assert result.error_stage[1] == "model" and "CUDA out of memory (simulated)" in result.error_message[1]
    for i in (0, 2):
        np.testing.assert_array_equal(result.embeddings[i, : len(windows[i])], real_embed(windows[i]))
        assert result.valid[i].sum() == len(windows[i])
    assert not result.valid[1].any()
