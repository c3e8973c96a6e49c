"""The store's schema, block writes, resume semantics, fingerprints and export."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from extract.store import (
    DONE,
    FAILED,
    PENDING,
    ClipTable,
    EmbeddingStore,
    FingerprintMismatchError,
    StoreError,
)
from extract.store.shards import pending_blocks
from extract.store.writer import BlockResult, StoreWriter
from extract.taxonomy import Taxonomy

SPEC = {"name": "toy.test", "version": "1", "embedding_dim": 4, "modality": "audio"}


def clip_table(n: int = 5, seconds: int = 3) -> ClipTable:
    ids = np.array([f"c{i}" for i in range(n)])
    return ClipTable(
        ids=ids, labels=np.array(["park", "bus"] * n)[:n], splits=np.array(["train", "test"] * n)[:n],
        n_seconds=np.full(n, seconds, np.int32), video_paths=np.array([f"video/{i}.mp4" for i in ids]),
        audio_paths=np.array([""] * n), probe_errors=np.array([""] * n),
    )


def block_result(n: int, seconds: int, value: float, status: int = DONE) -> BlockResult:
    return BlockResult(
        embeddings=np.full((n, seconds, 4), value, np.float32), valid=np.ones((n, seconds), bool),
        status=np.full(n, status, np.int8), error_stage=np.array([""] * n), error_message=np.array([""] * n),
        extract_seconds=np.ones(n, np.float32),
    )


@pytest.fixture
def store(tmp_path) -> StoreWriter:
    s = StoreWriter.create(tmp_path / "s.zarr", clip_table(), taxonomy=Taxonomy(("bus", "park")), data_root="/d", clips_per_chunk=2)
    s.prepare_group("toy.test", spec=SPEC, fingerprint="f1", weights="random-init")
    return s


def test_layout_and_attributes(store, tmp_path):
    assert store.n_blocks == 3 and store.seconds_max == 3
    assert store.block_slice(2) == slice(4, 5)
    attrs = store.group_attrs("toy.test")
    assert attrs["fingerprint"] == "f1" and attrs["weights"] == "random-init" and attrs["complete"] is False
    root_meta = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())
    assert root_meta["attributes"]["schema_version"] == 1 and root_meta["attributes"]["hop_seconds"] == 1.0
    emb = store.root["extractors/toy.test/original/embeddings"]
    assert emb.dtype == np.float16 and emb.chunks == (2, 3, 4)


def test_blocks_resume_and_completion(store):
    assert pending_blocks(store, "toy.test") == [0, 1, 2]
    store.write_block("toy.test", 1, block_result(2, 3, 0.5))
    assert pending_blocks(store, "toy.test") == [0, 2]
    assert pending_blocks(store, "toy.test", 1, 2) == []  # shard 1/2 owns block 1 only
    assert store.finalize_if_complete("toy.test") is False
    store.write_block("toy.test", 0, block_result(2, 3, 0.25))
    failed = block_result(1, 3, 0.0, FAILED)
    failed = BlockResult(failed.embeddings, np.zeros((1, 3), bool), failed.status, np.array(["decode"]),
                         np.array(["x.mp4: truncated"]), failed.extract_seconds)
    store.write_block("toy.test", 2, failed)
    assert store.finalize_if_complete("toy.test") is True
    assert store.group_attrs("toy.test")["complete"] is True
    assert store.errors("toy.test") == [("c4", "decode", "x.mp4: truncated")]
    assert list(store.status("toy.test")) == [DONE, DONE, DONE, DONE, FAILED]


def test_load_split_reads_done_clips_only(store):
    store.write_block("toy.test", 0, block_result(2, 3, 0.25))
    data = store.load_split(["toy.test"], "train")
    assert list(data.ids) == ["c0"]  # c2, c4 are train but still pending
    assert data.embeddings["toy.test"].shape == (1, 3, 4)
    np.testing.assert_array_equal(data.embeddings["toy.test"], 0.25)
    assert data.fingerprints == {"toy.test": "f1"}


def test_fingerprint_mismatch_refuses_unless_overwrite(store):
    store.write_block("toy.test", 0, block_result(2, 3, 0.25))
    with pytest.raises(FingerprintMismatchError, match="--overwrite"):
        store.prepare_group("toy.test", spec=SPEC, fingerprint="f2", weights="abc")
    assert store.status("toy.test")[0] == DONE  # nothing overwritten
    store.prepare_group("toy.test", spec=SPEC, fingerprint="f2", weights="abc", overwrite=True)
    assert (store.status("toy.test") == PENDING).all()


def test_reopen_with_other_clips_or_schema_is_refused(store, tmp_path):
    with pytest.raises(StoreError, match="another clip set"):
        StoreWriter.create(tmp_path / "s.zarr", clip_table(4), taxonomy=Taxonomy(("bus",)), data_root="/d", clips_per_chunk=2)
    store.root.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema_version"):
        EmbeddingStore.open(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="no store"):
        EmbeddingStore.open(tmp_path / "absent.zarr")


def test_corrupt_chunk_is_a_clear_error(store, tmp_path):
    store.write_block("toy.test", 0, block_result(2, 3, 0.25))
    chunk = tmp_path / "s.zarr" / "extractors" / "toy.test" / "original" / "embeddings" / "c" / "0" / "0" / "0"
    chunk.write_bytes(b"not zstd data")
    with pytest.raises(Exception):
        EmbeddingStore.open(tmp_path / "s.zarr").load_split(["toy.test"], None)


def test_export_h5_round_trip(store, tmp_path):
    store.write_block("toy.test", 0, block_result(2, 3, 0.25))
    store.export_h5(tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5") as h5:
        assert [x.decode() for x in h5["clips/id"][:]] == ["c0", "c1", "c2", "c3", "c4"]
        np.testing.assert_array_equal(h5["extractors/toy.test/original/embeddings"][:2], 0.25)
        assert json.loads(h5["extractors/toy.test/original"].attrs["json"])["fingerprint"] == "f1"


def test_fsspec_url_store(tmp_path):
    s = StoreWriter.create(f"file://{tmp_path}/u.zarr", clip_table(), taxonomy=Taxonomy(("bus", "park")), data_root="/d",
                           clips_per_chunk=2)
    s.prepare_group("toy.test", spec=SPEC, fingerprint="f1", weights="random-init")
    s.write_block("toy.test", 0, block_result(2, 3, 0.5))
    again = EmbeddingStore.open(f"file://{tmp_path}/u.zarr")
    assert pending_blocks(again, "toy.test") == [1, 2]


def test_views_lists_original_first(store):
    spec = {"name": "toy.test", "embedding_dim": 4, "version": "1"}
    store.prepare_group("toy.test", spec=spec, fingerprint="f1", weights="random-init", view="aug0")
    assert store.views("toy.test") == ["original", "aug0"]
    assert store.views("absent") == []


def test_group_record_is_the_typed_group_attrs(tiny_store):
    from extract.registry import get_spec

    opened = EmbeddingStore.open(tiny_store)
    for name in opened.extractor_names():
        record = opened.group_record(name)
        attrs = opened.group_attrs(name)
        assert record.spec == get_spec(name)
        assert (record.fingerprint, record.weights_id, record.complete) == (attrs["fingerprint"], attrs["weights"], True)
        assert record.training_run is None and not record.pretrained
    with pytest.raises(StoreError, match="no embeddings of 'nope'"):
        opened.group_record("nope")


# ----------------------------------------------------------------------------- stores written by earlier versions
REFERENCE_V1 = Path(__file__).parent / "data" / "store-v1-79d4789.zarr"  # see tests/reference_store.py
_WRITE_TIMES = ("created_utc", "completed_utc")


def zarr_metadata(store: Path) -> dict[str, dict]:
    """Every ``zarr.json`` under ``store`` by relative path, write times removed."""
    found = {}
    for path in sorted(store.rglob("zarr.json")):
        meta = json.loads(path.read_text())
        meta["attributes"] = {k: v for k, v in meta.get("attributes", {}).items() if k not in _WRITE_TIMES}
        found[str(path.relative_to(store))] = meta
    return found


def test_a_store_written_before_the_reader_writer_split_still_reads(tmp_path):
    from reference_store import N_CLIPS, reference_embeddings, specs

    old = EmbeddingStore.open(REFERENCE_V1)
    assert list(old.clips.ids) == [f"c{i}" for i in range(N_CLIPS)] and old.classes == ("bus", "park")
    names = sorted(specs())
    assert old.extractor_names() == names
    data = old.load_split(names, None)
    assert list(data.ids) == ["c0", "c1", "c2", "c3"]  # c4 failed for toy_audio
    for name in names:
        np.testing.assert_array_equal(data.embeddings[name], reference_embeddings(name)[:4].astype(np.float16))
    assert old.errors("toy_audio") == [("c4", "decode", "c4.wav: not a readable media file")]
    assert not old.clips.seconds_covered.any() and set(old.clips.coverage_missing) == {""}  # columns added since
    copy = tmp_path / "old.zarr"
    shutil.copytree(REFERENCE_V1, copy)
    assert StoreWriter.open(copy).finalize_if_complete("toy_audio") is True  # the writer reopens it too


def test_the_writer_writes_the_metadata_the_earlier_version_wrote(tmp_path):
    """Same input, same zarr.json files but for the checksums and the clip table's decoder columns (added since):
    attributes byte-identical in order and value once the root's ``checksums`` record is left out, codecs identical
    once each array's trailing crc32c is; same values."""
    from extract.store.format import CLIP_DECODE_COLUMNS
    from reference_store import write_reference_store

    write_reference_store(StoreWriter.create, BlockResult, str(tmp_path / "new.zarr"))
    old, new = zarr_metadata(REFERENCE_V1), zarr_metadata(tmp_path / "new.zarr")
    assert set(new) - set(old) == {f"clips/{c}/zarr.json" for c in CLIP_DECODE_COLUMNS} and set(old) <= set(new)
    assert new["zarr.json"]["attributes"].pop("checksums") == "crc32c" and "checksums" not in old["zarr.json"]["attributes"]
    for key in old:
        assert json.dumps(new[key]["attributes"]) == json.dumps(old[key]["attributes"]), key
        if new[key]["node_type"] == "array":
            assert new[key]["codecs"].pop() == {"name": "crc32c"}, key
        assert new[key] == old[key], key
    a, b = EmbeddingStore.open(REFERENCE_V1), EmbeddingStore.open(tmp_path / "new.zarr")
    for key in old:
        if old[key]["node_type"] == "array":
            np.testing.assert_array_equal(a.root[str(Path(key).parent)][:], b.root[str(Path(key).parent)][:])


def test_stage_2_imports_only_the_reader():
    """classify, vadd and the demo read stores; only the runner (and benchmarks, tests) writes them."""
    import re

    repo = Path(__file__).resolve().parent.parent
    writing = re.compile(r"extract\.store\.(writer|shards|lock|verify)\b|\bStoreWriter\b")
    found = [str(p.relative_to(repo)) for package in ("classify", "vadd", "avscene") for p in (repo / package).rglob("*.py")
             if writing.search(p.read_text())]
    assert found == []
