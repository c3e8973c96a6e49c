"""Row 4: the Zarr store vs the paper's float32 pickles: bytes per clip-second, write and whole-split read.

The paper's format is written the way its scripts do (a pickle of a dict ``{clip id: float32 (T, D)}``), only
inside this benchmark, to a temporary folder, and read back to time the paper's way of loading it (our own file;
avscene never reads data from pickles). Embeddings are random normal floats (as incompressible as real dense
embeddings: compression gains ~1.1x there, see the GUIDE).
"""
from __future__ import annotations

import logging
import pickle
import tempfile
from pathlib import Path

import numpy as np

from bench.common import best_times, make_row

logger = logging.getLogger(__name__)

SECONDS = 10
DIM = 1280  # mobilenet_v2.imagenet
NAME = "bench_visual"
BYTES_TARGET = 0.55
BASELINE = ("IDT-ITI/Visual-Audio-Discrepancy-Detection 1_extract_features.py lines 298-299 (pickle.dump of float32 "
            "features, HIGHEST_PROTOCOL) and 2_train_av_classifiers.py lines 557-598 (pickle.load, copy into float32 arrays)")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def synthetic_table(labels: np.ndarray, splits: np.ndarray, seconds: int):
    """A clip table of ``len(labels)`` clips of ``seconds`` s each (no media behind it)."""
    from extract.store import ClipTable

    empty = np.full(len(labels), "", dtype=str)
    return ClipTable(
        ids=np.array([f"clip-{i:05d}" for i in range(len(labels))]), labels=np.asarray(labels, str),
        splits=np.asarray(splits, str), n_seconds=np.full(len(labels), seconds, np.int32),
        video_paths=empty, audio_paths=empty, probe_errors=empty,
    )


def write_store(location: str, table, groups: dict[str, tuple[str, np.ndarray]], clips_per_chunk: int) -> None:
    """Create a store and write every block of each ``{name: (modality, (N, T, D) embeddings)}``, as the runner does."""
    from dataclasses import replace

    from extract.registry import get_spec
    from extract.store import DONE
    from extract.store.writer import BlockResult, StoreWriter
    from extract.taxonomy import default_taxonomy

    store = StoreWriter.create(location, table, taxonomy=default_taxonomy(tuple(sorted(set(table.labels)))), data_root="-",
                               clips_per_chunk=clips_per_chunk)
    for name, (modality, embeddings) in groups.items():
        spec = replace(get_spec(f"debug_{modality}"), name=name, embedding_dim=embeddings.shape[-1], version="bench",
                       description="synthetic benchmark embeddings")  # a complete spec: readers get an ExtractorSpec
        store.prepare_group(name, spec=spec.to_dict(), fingerprint=f"bench-{name}", weights="random")
        for block in range(store.n_blocks):
            sl = store.block_slice(block)
            n = sl.stop - sl.start
            store.write_block(name, block, BlockResult(
                embeddings[sl], np.ones((n, embeddings.shape[1]), bool), np.full(n, DONE, np.int8),
                np.full(n, "", str), np.full(n, "", str), np.zeros(n, np.float32)))
        store.finalize_if_complete(name)


def write_pickle(path: Path, embeddings: np.ndarray, ids: np.ndarray) -> None:
    """The paper's cache: one pickle of ``{clip id: float32 (T, D)}``."""
    with open(path, "wb") as f:
        pickle.dump({str(i): e for i, e in zip(ids, embeddings)}, f, protocol=pickle.HIGHEST_PROTOCOL)


def read_pickle_split(path: Path) -> np.ndarray:
    """The paper's way to get the split into RAM: unpickle the dict and stack it, ``(N, T, D)`` float32. Only for
    the file :func:`write_pickle` wrote a moment before in this benchmark's temporary folder; avscene itself never
    reads data from pickles."""
    with open(path, "rb") as f:
        by_clip = pickle.load(f)  # noqa: S301 (our own file, just written)
    return np.stack(list(by_clip.values()))


def run(quick: bool = False) -> list[dict]:
    """Write the same embeddings both ways; read the store's whole split back into RAM."""
    from extract.store import EmbeddingStore
    from extract.store.writer import default_clips_per_chunk

    n_clips = 256 if quick else 2048
    table = synthetic_table(np.array(["airport", "bus", "park"])[np.arange(n_clips) % 3], np.full(n_clips, "test"), SECONDS)
    embeddings = np.random.default_rng(0).standard_normal((n_clips, SECONDS, DIM)).astype(np.float32)
    per_chunk = default_clips_per_chunk(SECONDS, DIM)
    with tempfile.TemporaryDirectory(prefix="avscene-bench-store-") as tmp:
        counter = iter(range(1000))

        def ours() -> str:
            location = str(Path(tmp) / f"store{next(counter)}.zarr")
            write_store(location, table, {NAME: ("visual", embeddings)}, per_chunk)
            return location

        def theirs() -> Path:
            path = Path(tmp) / f"paper{next(counter)}.pkl"
            write_pickle(path, embeddings, table.ids)
            return path

        write_s, written = best_times({"ours": ours, "theirs": theirs}, rounds=1 if quick else 2)
        store_bytes, pickle_bytes = folder_bytes(Path(written["ours"])), Path(written["theirs"]).stat().st_size
        read_s, loaded = best_times({"ours": lambda: EmbeddingStore.open(written["ours"]).load_split([NAME], "test"),
                                     "theirs": lambda: read_pickle_split(written["theirs"])}, rounds=2 if quick else 3)
    got = loaded["ours"].embeddings[NAME]
    max_error = float(np.abs(got.astype(np.float32) - embeddings).max())
    clip_seconds = n_clips * SECONDS
    common = {"clips": n_clips, "seconds_per_clip": SECONDS, "dim": DIM, "clips_per_chunk": per_chunk}
    ratio = store_bytes / pickle_bytes
    write_ratio = write_s["theirs"] / write_s["ours"]
    if loaded["theirs"].shape != embeddings.shape:
        raise RuntimeError(f"the pickle read back as {loaded['theirs'].shape}, expected {embeddings.shape}")
    return [
        make_row(
            f"store size: Zarr float16 vs the paper's float32 pickle ({DIM}-d)",
            f"{store_bytes / clip_seconds:.0f} B/clip-s", f"{pickle_bytes / clip_seconds:.0f} B/clip-s", ratio,
            f"<= {BYTES_TARGET:g}x", ratio <= BYTES_TARGET,
            {**common, "store_bytes": store_bytes, "pickle_bytes": pickle_bytes, "max_abs_float16_error": max_error},
            BASELINE),
        make_row(
            "store write: Zarr blocks (resumable, shardable) vs one float32 pickle",
            f"{n_clips / write_s['ours']:.0f} clips/s", f"{n_clips / write_s['theirs']:.0f} clips/s", write_ratio,
            "(no target)", None, {**common, "seconds": write_s}, BASELINE),
        make_row(
            "store read: whole split into RAM, Zarr load_split (float16) vs unpickling the float32 dict and stacking it",
            f"{n_clips / read_s['ours']:.0f} clips/s ({got.nbytes / read_s['ours'] / 1e6:.0f} MB/s)",
            f"{n_clips / read_s['theirs']:.0f} clips/s", read_s["theirs"] / read_s["ours"],
            "(no target)", None, {**common, "seconds": read_s}, BASELINE),
    ]
