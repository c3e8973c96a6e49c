"""The store's on-disk format (Zarr v3): its constants, its clip table type, and how a group is opened.

Layout (``N`` clips, ``T`` = longest clip in seconds, ``C`` = clips per chunk)::

    <store>/                          attrs: schema_version, hop_seconds, frame_offset_seconds, classes,
                                             taxonomy, data_root, dataset_card (synthetic?, description),
                                             clips_per_chunk, seconds_max, checksums, ready
    clips/{id,label,split,video_path,audio_path,probe_error}   (N,) str
    clips/n_seconds                   (N,) int32   seconds with every available modality
    clips/{duration_s,seconds_covered,coverage_missing,orientation}   what the decoder found: the file's duration
                                      (float32 s), the seconds every stream covers (int32), why the others are not
                                      (str, '' = the whole file) and how frames were turned (str, '' = as stored)
    extractors/<name>/<view>/         attrs: spec, fingerprint, weights, code_version, complete, timing
        embeddings                    (N, T, D) float16, chunks (C, T, D)
        valid                         (N, T) bool   second k was embedded
        status                        (N,) int8     0 pending, 1 done, 2 failed   (written last per block)
        error_stage, error_message    (N,) str
        extract_seconds               (N,) float32  wall time spent on the clip (decode + model)

Every array of a store written since checksums were recorded (root attribute ``checksums: "crc32c"``) ends its
codec chain with Zarr v3's ``crc32c`` codec, and every chunk of a written block is stored (an all-zero chunk too):
a flipped bit is a read error, a missing chunk of a done block is damage. Older stores have neither; they still open.

A block is one chunk of ``C`` clips. A writer owns whole blocks: it writes the block's embeddings,
validity and errors, then its status; so a block whose status is still pending is redone on resume and
a killed run loses at most the blocks in flight. Every group and array is created before any block is
written (by the single process or by shard 0, which the other shards wait for).

:mod:`extract.store.reader` reads this format (all that stage 2 imports), :mod:`extract.store.writer` writes it (only the
runner), :mod:`extract.store.shards` coordinates the processes writing one store.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import zarr

from avscene.errors import AvsceneError

SCHEMA_VERSION = 1
HOP_SECONDS = 1.0
FRAME_CHOICES = {"middle": 0.5, "released-code": 29 / 30}
"""Which frame stands for second k: the one shown at k + offset s. ``middle`` (the papers' text, avscene's default);
``released-code``: the released feature script's, the 30th frame of each second at 30 fps (frame indices 29, 59, ...)."""
FRAME_OFFSET_SECONDS = FRAME_CHOICES["middle"]  # the frame of second k is the one shown at k + 0.5 s
DEFAULT_VIEW = "original"
PENDING, DONE, FAILED = 0, 1, 2
FLOAT16_MAX = float(np.finfo(np.float16).max)
CLIP_TEXT_COLUMNS = ("id", "label", "split", "video_path", "audio_path", "probe_error")
CLIP_DECODE_COLUMNS = {"duration_s": "float32", "seconds_covered": "int32", "coverage_missing": str, "orientation": str}
"""Clip-table columns of what the decoder found (ClipTable fields of the same names); a store written before them
reads them as 0 and ''."""
CHECKSUM = "crc32c"  # the root attribute ``checksums`` of stores whose arrays carry it
T = TypeVar("T")


class StoreError(AvsceneError, RuntimeError):
    """The store cannot be used as asked (wrong schema, other clip set, not ready, corrupt)."""


class FingerprintMismatchError(StoreError):
    """An extractor group was written by a different extractor configuration."""


@dataclass(frozen=True)
class ClipTable:
    """The store's clip table, loaded into memory once."""

    ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str
    n_seconds: np.ndarray  # (N,) int32
    video_paths: np.ndarray  # (N,) str, relative to data_root, or absolute outside it ('' when absent)
    audio_paths: np.ndarray  # (N,) str, '' = the video's own audio track
    probe_errors: np.ndarray  # (N,) str, '' when the media probed fine
    duration_s: np.ndarray | None = None  # (N,) float32: the file's duration as a player shows it (None: zeros)
    seconds_covered: np.ndarray | None = None  # (N,) int32: seconds every stream covers (None: zeros)
    coverage_missing: np.ndarray | None = None  # (N,) str: why seconds are not covered, '' = the whole file
    orientation: np.ndarray | None = None  # (N,) str: how frames were turned for display, '' = as stored

    def __post_init__(self) -> None:
        for column, dtype in CLIP_DECODE_COLUMNS.items():
            if getattr(self, column) is None:
                object.__setattr__(self, column, np.zeros(len(self.ids), dtype) if dtype != str
                                   else np.full(len(self.ids), "", dtype=str))

    def __len__(self) -> int:
        return len(self.ids)

    def text_columns(self) -> tuple[np.ndarray, ...]:
        """The string columns, in the order of ``CLIP_TEXT_COLUMNS``."""
        return self.ids, self.labels, self.splits, self.video_paths, self.audio_paths, self.probe_errors


def group_key(name: str, view: str = DEFAULT_VIEW) -> str:
    return f"extractors/{name}/{view}"


def retry_torn(read: Callable[[], T], location: str, attempts: int = 50, pause_s: float = 0.05) -> T:
    """``read()`` of the store at ``location``, retried while it meets half-written metadata JSON.

    Local paths are written atomically by zarr (read once: a truncated file there is damage), object stores replace
    whole objects, but fsspec's ``file://`` (and some network filesystems) truncate then write: another shard's reader
    can catch the moment between the two.
    """
    for _ in range(attempts - 1 if "://" in location else 0):
        try:
            return read()
        except json.JSONDecodeError:
            time.sleep(pause_s)
    return read()


def open_group(location: str, mode: str) -> zarr.Group:
    """Open a local path or fsspec URL (local ``file://`` URLs create parent folders as needed)."""
    options = {"auto_mkdir": True} if location.startswith("file://") else None
    return retry_torn(lambda: zarr.open_group(location, mode=mode, storage_options=options), location)


def as_str(values: np.ndarray) -> np.ndarray:
    """Zarr's variable-length strings as a plain numpy unicode array."""
    return np.array(values.tolist(), dtype=str).reshape(values.shape)


def checksummed_codecs() -> dict[str, Any]:
    """``create_array`` keywords of every array of a new store: zarr's default zstd (level 0), then a crc32c checksum
    of each stored chunk."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {"compressors": [ZstdCodec(level=0, checksum=False), Crc32cCodec()]}


@contextmanager
def storing_every_chunk() -> Iterator[None]:
    """Write chunks equal to the fill value too (zarr skips them by default), so that a chunk missing from a written
    block is damage, never a block of zeros."""
    with zarr.config.set({"array.write_empty_chunks": True}):
        yield


def _chunk_key(arr: zarr.Array, block: int) -> str:
    """The store key of the chunk holding rows ``block * chunks[0]`` onwards (chunked along the first axis only)."""
    return f"{arr.store_path.path}/{arr.metadata.encode_chunk_key((block,) + (0,) * (arr.ndim - 1))}"


def chunk_present(arr: zarr.Array, block: int) -> bool:
    """Whether chunk ``block`` of ``arr`` is stored (zarr reads an absent chunk as the fill value)."""
    from zarr.core.sync import sync

    return bool(sync(arr.store_path.store.exists(_chunk_key(arr, block))))


def delete_chunk(arr: zarr.Array, block: int) -> None:
    """Remove chunk ``block`` of ``arr`` (it then reads as the fill value: ``status`` pending)."""
    from zarr.core.sync import sync

    sync(arr.store_path.store.delete(_chunk_key(arr, block)))


def unreadable_metadata(location: str) -> list[str]:
    """The ``zarr.json`` files of a local store that are not valid JSON (truncated, overwritten); [] for URLs."""
    if "://" in location:
        return []
    bad = []
    for path in sorted(Path(location).rglob("zarr.json")):
        try:
            json.loads(path.read_text())
        except (ValueError, OSError):
            bad.append(str(path))
    return bad


def store_exists(location: str) -> bool:
    if "://" not in location:
        return (Path(location) / "zarr.json").exists()
    try:
        open_group(location, mode="r")
        return True
    except Exception:
        return False


def store_ready(location: str) -> bool:
    """A store exists at ``location`` and its clip table is complete."""
    return store_exists(location) and bool(open_group(location, mode="r").attrs.get("ready"))


BLOCK_ARRAYS = ("status", "embeddings", "valid", "error_stage", "error_message", "extract_seconds")
"""Every per-block array of an extractor view's group, status first."""
