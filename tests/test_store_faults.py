"""A store you can trust (issue 24): damage is detected and named, never read as numbers; `verify --repair` and a
rerun mend it; one writer per shard; an interrupted creation is resumed; readers of an incomplete store stop.

Each probe below is a row of the reliability table (docs): what is done to the store, what the project promises, what
the test asserts."""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import zarr

from extract.cli import main as extract_main
from extract.store import DONE, PENDING, EmbeddingStore, StoreError
from extract.store.lock import ShardLock, lock_path
from extract.store.verify import repair_store, verify_store
from extract.store.writer import BlockResult, StoreWriter
from reference_store import write_reference_store

N_CLIPS = 4  # the audio-only manifest: 2 blocks of 2 clips
AUDIO_GROUP = "extractors/debug_audio/original"


@pytest.fixture(scope="session")
def audio_manifest(tiny_dataset, tmp_path_factory) -> Path:
    """A CSV manifest of 4 of the tiny dataset's wavs (2 train, 2 test; labels bus/park): debug_audio embeds it in
    well under a second."""
    wavs = sorted((tiny_dataset / "audio").glob("*.wav"))[:N_CLIPS]
    rows = "".join(f",{w},{'bus' if i % 2 else 'park'},{'train' if i < 2 else 'test'}\n" for i, w in enumerate(wavs))
    path = tmp_path_factory.mktemp("audio4") / "manifest.csv"
    path.write_text("video,audio,label,split\n" + rows)
    return path


def run_args(manifest: Path, store: str, *extra: str) -> list[str]:
    return ["run", "--data", str(manifest), "--store", store, "--extractors", "debug_audio", "--device", "cpu",
            "--clips-per-chunk", "2", "--no-progress", "--decode-workers", "1", *extra]


@pytest.fixture(scope="session")
def audio_reference(audio_manifest, tmp_path_factory) -> str:
    """The manifest extracted once, uninterrupted: what every mended or raced store must equal."""
    store = str(tmp_path_factory.mktemp("audio-ref") / "ref.zarr")
    assert extract_main(run_args(audio_manifest, store)) == 0
    return store


@pytest.fixture
def audio_store(audio_reference, tmp_path) -> str:
    """A private copy of the reference store, to damage."""
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(audio_reference, copy)
    return copy


@pytest.fixture
def toy_store(tmp_path) -> str:
    """The two-group reference store (tests/reference_store.py) written by today's writer."""
    location = str(tmp_path / "toy.zarr")
    write_reference_store(StoreWriter.create, BlockResult, location)
    return location


def assert_same_audio_store(a: str, b: str) -> None:
    sa, sb = EmbeddingStore.open(a), EmbeddingStore.open(b)
    assert list(sa.clips.ids) == list(sb.clips.ids)
    for array in ("embeddings", "valid", "status", "error_stage", "error_message"):
        np.testing.assert_array_equal(sa.root[f"{AUDIO_GROUP}/{array}"][:], sb.root[f"{AUDIO_GROUP}/{array}"][:], array)
    assert sa.group_record("debug_audio").complete and verify_store(a).damage == ()


def chunk_file(store: str, array: str, block: int, group: str = AUDIO_GROUP) -> Path:
    arr = zarr.open_group(store, mode="r")[f"{group}/{array}"]
    return Path(store, group, array, arr.metadata.encode_chunk_key((block,) + (0,) * (arr.ndim - 1)))


def flip_bits(path: Path, n_bytes: int = 1, seed: int = 0) -> None:
    """XOR ``n_bytes`` bytes of the file at seeded positions (past the first 4: inside the compressed data)."""
    data = bytearray(path.read_bytes())
    for i in random.Random(seed).sample(range(4, len(data) - 4), n_bytes):
        data[i] ^= 0x10
    path.write_bytes(bytes(data))


def cli_error(capsys, argv: list[str], main=extract_main) -> str:
    """Run a CLI that must fail with one ``error:`` line (exit 2); returns that line."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


# ----------------------------------------------------------------------------- checksums
def test_every_array_of_a_new_store_carries_a_crc32c_checksum_recorded_in_the_schema(audio_store, capsys):
    metadata = [json.loads(p.read_text()) for p in Path(audio_store).rglob("zarr.json")]
    arrays = [m for m in metadata if m["node_type"] == "array"]
    assert len(arrays) == 11 + 6 and all(m["codecs"][-1] == {"name": "crc32c"} for m in arrays)
    assert EmbeddingStore.open(audio_store).checksums == "crc32c"
    assert extract_main(["info", "--store", audio_store]) == 0
    assert "checksums: crc32c on every array" in capsys.readouterr().out


def test_an_older_store_without_checksums_opens_and_info_says_so(capsys):
    from test_store import REFERENCE_V1

    assert EmbeddingStore.open(REFERENCE_V1).checksums is None
    assert extract_main(["info", "--store", str(REFERENCE_V1)]) == 0
    assert "checksums: none (written before avscene recorded them)" in capsys.readouterr().out
    assert verify_store(str(REFERENCE_V1)).damage == ()


@pytest.mark.parametrize("n_bytes", [1, 16])
def test_flipped_bytes_in_an_embeddings_chunk_are_an_error_naming_the_array(audio_store, n_bytes):
    flip_bits(chunk_file(audio_store, "embeddings", 1), n_bytes)
    with pytest.raises(StoreError, match=f"{AUDIO_GROUP}/embeddings.*checksum"):
        EmbeddingStore.open(audio_store).load_split(["debug_audio"], None)
    damage = verify_store(audio_store).damage
    assert [(d.where, d.block, len(d.clips)) for d in damage] == [("debug_audio/original", 1, 2)]
    assert "embeddings chunk unreadable" in damage[0].problem


def test_a_flipped_byte_in_the_clip_table_is_an_error(audio_store):
    flip_bits(Path(audio_store, "clips", "id", "c", "0"))
    with pytest.raises(StoreError, match="cannot read the clip table.*checksum"):
        EmbeddingStore.open(audio_store).clips
    assert verify_store(audio_store).damage[0].where == "clips"


# ----------------------------------------------------------------------------- missing chunks
@pytest.mark.parametrize("array", ["embeddings", "valid"])
def test_a_deleted_chunk_of_a_done_block_is_an_error_never_zeros(audio_store, array):
    chunk_file(audio_store, array, 0).unlink()
    with pytest.raises(StoreError, match=f"{array}: chunk 0 is missing although clips"):
        EmbeddingStore.open(audio_store).load_split(["debug_audio"], None)
    damage = verify_store(audio_store).damage
    assert [(d.block, d.problem) for d in damage] == [(0, f"{array} chunk missing (it would read as zeros)")]


def test_a_deleted_chunk_of_an_older_store_is_found_too(tmp_path):
    from test_store import REFERENCE_V1

    copy = tmp_path / "old.zarr"
    shutil.copytree(REFERENCE_V1, copy)
    chunk_file(str(copy), "embeddings", 1, "extractors/toy_visual/original").unlink()
    with pytest.raises(StoreError, match="chunk 1 is missing"):
        EmbeddingStore.open(copy).load_split(["toy_visual"], None)
    assert [d.block for d in verify_store(str(copy)).damage] == [1]


# ----------------------------------------------------------------------------- non-finite values
def test_nan_embeddings_are_refused_naming_the_clips(toy_store):
    """What a bit flip does to a store without checksums: NaN in one clip (written here through zarr directly)."""
    zarr.open_group(toy_store, mode="r+")["extractors/toy_visual/original/embeddings"][3, 1, 2] = np.nan
    with pytest.raises(StoreError, match=r"1 clip\(s\) hold NaN or inf embeddings \(c3\)"):
        EmbeddingStore.open(toy_store).load_split(["toy_visual"], None)
    damage = verify_store(toy_store).damage
    assert [(d.where, d.block, d.clips) for d in damage] == [("toy_visual/original", None, ("c3",))]
    assert repair_store(verify_store(toy_store)) == 1
    status = EmbeddingStore.open(toy_store).status("toy_visual")
    assert list(status) == [DONE, DONE, DONE, PENDING, DONE]  # only the damaged clip is redone


# ----------------------------------------------------------------------------- damaged metadata
def test_a_truncated_group_zarr_json_is_one_error_naming_the_file(audio_store, capsys):
    meta = Path(audio_store, AUDIO_GROUP, "zarr.json")
    meta.write_text(meta.read_text()[: len(meta.read_text()) // 2])
    line = cli_error(capsys, ["info", "--store", audio_store])
    assert f"{meta}: truncated or not JSON" in line


def test_a_truncated_root_zarr_json_is_one_error_naming_the_file(audio_store, capsys):
    meta = Path(audio_store, "zarr.json")
    meta.write_text(meta.read_text()[:40])
    assert f"{meta}: truncated or not JSON" in cli_error(capsys, ["info", "--store", audio_store])


@pytest.mark.parametrize("array", ["status", "embeddings", "clips/id"])
def test_shapes_are_checked_against_the_clip_table_before_anything_is_allocated(audio_store, capsys, array):
    """The probe: a status array claiming 10^9 clips made `info` hang and training grow to 5.9 GB."""
    meta = Path(audio_store, array if array.startswith("clips") else f"{AUDIO_GROUP}/{array}", "zarr.json")
    doc = json.loads(meta.read_text())
    doc["shape"][0] = 10**9
    meta.write_text(json.dumps(doc))
    line = cli_error(capsys, ["verify" if array == "embeddings" else "info", "--store", audio_store])  # info reads no
    assert f"{meta}: shape (1000000000," in line and "the store's metadata is damaged" in line  # embeddings


# ----------------------------------------------------------------------------- verify --repair, then a rerun
@pytest.mark.parametrize("damage", ["bit flip", "deleted chunk"])
def test_verify_repair_then_rerun_equals_an_uninterrupted_run(audio_manifest, audio_reference, audio_store, capsys,
                                                               damage):
    path = chunk_file(audio_store, "embeddings", 1)
    flip_bits(path, 16) if damage == "bit flip" else path.unlink()
    assert extract_main(["verify", "--store", audio_store]) == 1
    out = capsys.readouterr().out
    assert "damaged: debug_audio/original block 1" in out and "2 damaged clip(s)" in out
    assert extract_main(["verify", "--store", audio_store, "--repair"]) == 0
    assert "reset 2 clip(s) to pending" in capsys.readouterr().out
    assert extract_main(run_args(audio_manifest, audio_store)) == 0
    assert "debug_audio: done now 2, failed now 0, done earlier 2" in capsys.readouterr().out  # only the damaged block
    assert_same_audio_store(audio_store, audio_reference)
    assert extract_main(["verify", "--store", audio_store]) == 0


# ----------------------------------------------------------------------------- no damaged store trains a head
def _damage(store: str, how: str) -> None:
    if how == "bit flip":
        flip_bits(chunk_file(store, "embeddings", 0), 16)
    elif how == "deleted chunk":
        chunk_file(store, "embeddings", 0).unlink()
    elif how == "deleted valid chunk":
        chunk_file(store, "valid", 1).unlink()
    elif how == "nan":
        zarr.open_group(store, mode="r+")[f"{AUDIO_GROUP}/embeddings"][0, 0, 0] = np.inf
    elif how == "truncated metadata":
        Path(store, AUDIO_GROUP, "embeddings", "zarr.json").write_text("{")


@pytest.mark.parametrize("how", ["bit flip", "deleted chunk", "deleted valid chunk", "nan", "truncated metadata"])
def test_no_damaged_store_trains_a_head(audio_store, tmp_path, capsys, how):
    from classify.cli import main as classify_main

    _damage(audio_store, how)
    out = tmp_path / "run"
    line = cli_error(capsys, ["train", "--store", audio_store, "--epochs", "1", "--out", str(out)], classify_main)
    assert audio_store in line and "damaged" in line
    assert not (out / "model.pt").exists()


def test_training_refuses_to_return_a_head_whose_loss_is_not_finite(audio_reference):
    from classify.data import load_clips
    from classify.heads import HeadConfig
    from classify.train import TrainingError, preset, train_head

    train = load_clips(EmbeddingStore.open(audio_reference), ["debug_audio"], "train")
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(TrainingError, match="training diverged: loss nan"):
        train.features["debug_audio"] = train.features["debug_audio"].astype(np.float32) * np.float32(1e38)  # inf
        train_head(train, HeadConfig(kind="ls"), preset("adam", epochs=1), progress=False)


# ----------------------------------------------------------------------------- readers of an incomplete store
def test_training_on_an_incomplete_store_stops_unless_allowed_then_records_class_coverage(audio_store, tmp_path,
                                                                                           capsys, caplog):
    from classify.cli import main as classify_main
    from vadd.cli import main as vadd_main

    StoreWriter.open(audio_store).reset_rows("debug_audio", np.array([0]))  # clip 0 (train, park) pending again
    argv = ["train", "--store", audio_store, "--epochs", "1", "--out", str(tmp_path / "run")]
    assert "debug_audio/original is not complete" in cli_error(capsys, argv, classify_main)
    assert "--allow-incomplete" in cli_error(capsys, ["eval", "--store", audio_store], vadd_main)
    assert classify_main([*argv, "--allow-incomplete"]) == 0
    assert "train clips usable per class: bus 1/1, park 0/1" in caplog.text
    coverage = json.loads((tmp_path / "run" / "metrics.json").read_text())["incomplete_extraction"]
    assert coverage == {"incomplete_groups": ["debug_audio/original"], "split": "train",
                        "classes": {"bus": {"usable": 1, "clips": 1}, "park": {"usable": 0, "clips": 1}}}


# ----------------------------------------------------------------------------- one writer per shard, safe creation
def test_a_second_run_on_a_held_shard_is_refused_naming_the_running_one(audio_manifest, tmp_path, capsys):
    store = str(tmp_path / "held.zarr")
    with ShardLock(store):
        line = cli_error(capsys, run_args(audio_manifest, store))
    assert f"shard 0/1 is being written by pid {os.getpid()} on {socket.gethostname()}" in line and "--wait" in line
    assert not Path(store).exists()  # refused before creating anything
    assert extract_main(run_args(audio_manifest, store)) == 0 and not lock_path(store, 0, 1).exists()


def test_wait_starts_after_the_running_one(audio_manifest, audio_reference, tmp_path):
    import threading

    store = str(tmp_path / "queued.zarr")
    lock = ShardLock(store)
    lock.acquire()
    threading.Timer(1.0, lock.release).start()
    assert extract_main(run_args(audio_manifest, store, "--wait")) == 0
    assert_same_audio_store(store, audio_reference)


def test_a_stale_lock_is_taken_over_and_logged(audio_manifest, audio_reference, tmp_path, caplog):
    store = str(tmp_path / "stale.zarr")
    dead = {"host": socket.gethostname(), "pid": 2**22 + 12345, "started_utc": "2020-01-01T00:00:00Z"}  # > pid_max
    lock_path(store, 0, 1).write_text(json.dumps(dead))
    assert extract_main(run_args(audio_manifest, store)) == 0
    assert "taking over the stale lock of pid 4206649" in caplog.text
    assert_same_audio_store(store, audio_reference)


def test_an_interrupted_creation_is_resumed_not_deleted(audio_manifest, audio_reference, tmp_path):
    """A creation killed after the root and part of the clip table: the rerun writes the table again in place."""
    store = tmp_path / "interrupted.zarr"
    root = zarr.open_group(str(store), mode="w")
    root.create_group("clips").create_array("id", shape=(N_CLIPS,), dtype=str)
    keep = store / "NOTES.txt"  # anything else in the folder survives
    keep.write_text("mine")
    assert extract_main(run_args(audio_manifest, str(store))) == 0
    assert keep.read_text() == "mine"
    assert_same_audio_store(str(store), audio_reference)


def test_a_non_empty_folder_that_is_not_a_store_is_refused(audio_manifest, tmp_path, capsys):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.tex").write_text("x")
    assert "not an avscene store" in cli_error(capsys, run_args(audio_manifest, str(folder)))
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_two_runs_started_at_once_on_a_new_store_over_20_seeded_trials(audio_manifest, audio_reference, tmp_path):
    """The issue's probe (13 crashes and 6 unreadable stores in 21 trials before the lock): two `extract run` processes
    on the same new store and shard, started at one instant (a seeded delay of 0-30 ms for one of them); in odd trials
    the second passes --wait. Every trial: no crash, each run exits 0 or is refused naming the running one, the store
    equals an uninterrupted run's and `verify` finds nothing."""
    from store_race import RacingWorkers

    rng = random.Random(24)
    workers = RacingWorkers(2)
    outcomes = []
    try:
        for trial in range(20):
            store = str(tmp_path / f"race-{trial}.zarr")
            wait = ("--wait",) if trial % 2 else ()
            delays = rng.sample([0.0, rng.uniform(0, 0.03)], 2)
            results = workers.race([(run_args(audio_manifest, store), delays[0]),
                                    (run_args(audio_manifest, store, *wait), delays[1])])
            for rc, err in results:
                assert rc == 0 or (rc == 2 and "is being written by pid" in err), f"trial {trial}: {rc} {err}"
            assert any(rc == 0 for rc, _ in results)
            assert_same_audio_store(store, audio_reference)
            assert not lock_path(store, 0, 1).exists()
            outcomes.append(tuple(rc for rc, _ in results))
    finally:
        workers.close()
    assert any(2 in o for o in outcomes[0::2]), f"no trial ever met a running run: {outcomes}"
