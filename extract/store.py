"""The embedding store: the only module that reads or writes its on-disk format (Zarr v3).

Layout (``N`` clips, ``T`` = longest clip in seconds, ``C`` = clips per chunk)::

    <store>/                          attrs: schema_version, hop_seconds, frame_offset_seconds, classes,
                                             taxonomy, data_root, dataset_card (synthetic?, description),
                                             clips_per_chunk, seconds_max, ready
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

A block is one chunk of ``C`` clips. A writer owns whole blocks: it writes the block's embeddings,
validity and errors, then its status; so a block whose status is still pending is redone on resume and
a killed run loses at most the blocks in flight. Every group and array is created before any block is
written (by the single process or by shard 0, which the other shards wait for).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import zarr

from extract import __version__
from extract.dataset_card import DatasetCard
from avscene.errors import AvsceneError
from avscene.paths import cache_dir
from extract.registry import ExtractorSpec
from extract.taxonomy import Taxonomy, default_taxonomy
from extract.weights import BUILTIN, RANDOM_INIT

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
HOP_SECONDS = 1.0
FRAME_CHOICES = {"middle": 0.5, "released-code": 29 / 30}
"""Which frame stands for second k: the one shown at k + offset s. ``middle`` (the papers' text, avscene's default);
``released-code``: the released feature script's, the 30th frame of each second at 30 fps (frame indices 29, 59, ...)."""
FRAME_OFFSET_SECONDS = FRAME_CHOICES["middle"]  # the frame of second k is the one shown at k + 0.5 s
DEFAULT_VIEW = "original"
PENDING, DONE, FAILED = 0, 1, 2
FLOAT16_MAX = float(np.finfo(np.float16).max)
T = TypeVar("T")
_CLIP_TEXT_COLUMNS = ("id", "label", "split", "video_path", "audio_path", "probe_error")
_CLIP_DECODE_COLUMNS = {"duration_s": "float32", "seconds_covered": "int32", "coverage_missing": str, "orientation": str}
"""Clip-table columns of what the decoder found (ClipTable fields of the same names); a store written before them
reads them as 0 and ''."""


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
        for column, dtype in _CLIP_DECODE_COLUMNS.items():
            if getattr(self, column) is None:
                object.__setattr__(self, column, np.zeros(len(self.ids), dtype) if dtype != str
                                   else np.full(len(self.ids), "", dtype=str))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class BlockResult:
    """What a writer computed for one block of clips (all arrays cover exactly the block)."""

    embeddings: np.ndarray  # (n, T, D) float32
    valid: np.ndarray  # (n, T) bool
    status: np.ndarray  # (n,) int8
    error_stage: np.ndarray  # (n,) str
    error_message: np.ndarray  # (n,) str
    extract_seconds: np.ndarray  # (n,) float32


@dataclass(frozen=True)
class ExcludedClip:
    """A clip of a split that a reader leaves out, and why (the first extractor view that lacks it)."""

    clip: str
    split: str
    reason: str  # e.g. "debug_audio: failed [decode] x.wav: not a readable media file (...)" or "...: pending"

    def to_dict(self) -> dict[str, str]:
        return {"clip": self.clip, "split": self.split, "reason": self.reason}


@dataclass(frozen=True)
class UsableClips:
    """The answer to "which clips of this split can a reader of these extractor views use?"."""

    rows: np.ndarray  # (n,) int, ascending rows of the clip table: done by every extractor view asked
    excluded: tuple[ExcludedClip, ...]  # every other clip of the split


@dataclass(frozen=True)
class SplitData:
    """One split of the store, in RAM: the stage-2 input."""

    ids: np.ndarray  # (n,) str
    labels: np.ndarray  # (n,) str
    n_seconds: np.ndarray  # (n,) int32
    embeddings: dict[str, np.ndarray]  # name -> (n, T, D) float16
    valid: dict[str, np.ndarray]  # name -> (n, T) bool
    fingerprints: dict[str, str]
    excluded: tuple[ExcludedClip, ...] = ()


@dataclass(frozen=True)
class GroupRecord:
    """What the store records about one extractor view's group (its attrs, typed)."""

    spec: ExtractorSpec
    fingerprint: str
    weights_id: str  # the weights' id: a file's sha256 prefix, "random-init", "builtin-seeded", ...
    training_run: dict[str, Any] | None  # run record of weights trained here (None for published or random weights)
    complete: bool

    @property
    def pretrained(self) -> bool:
        """Whether the embeddings come from loaded weights (not random or built-in parameters)."""
        return self.weights_id not in (RANDOM_INIT, BUILTIN)


def group_key(name: str, view: str = DEFAULT_VIEW) -> str:
    return f"extractors/{name}/{view}"


def default_clips_per_chunk(seconds_max: int, embedding_dim_max: int, target_bytes: int = 2 << 20) -> int:
    """Largest power of two in [8, 64] keeping a float16 chunk near ``target_bytes``."""
    per_clip = max(1, seconds_max * embedding_dim_max * 2)
    c = 8
    while c < 64 and (c * 2) * per_clip <= target_bytes:
        c *= 2
    return c


class EmbeddingStore:
    """A Zarr v3 embedding store at a local path or an fsspec URL."""

    def __init__(self, root: zarr.Group, location: str):
        self.root = root
        self.location = location
        attrs = dict(root.attrs)
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"{location}: schema_version {attrs.get('schema_version')!r} is not {SCHEMA_VERSION}; "
                "this store was written by another avscene version"
            )
        self.attrs = attrs
        self.clips_per_chunk = int(attrs["clips_per_chunk"])
        self.seconds_max = int(attrs["seconds_max"])
        self._clips: ClipTable | None = None

    # ----------------------------------------------------------------- opening and creating
    @classmethod
    def open(cls, location: str | Path, mode: str = "r") -> "EmbeddingStore":
        loc = str(location)
        if "://" not in loc and not Path(loc).exists():
            found = local_stores(cache_dir())
            raise StoreError(f"no store at {loc}; run `make extract` (python -m extract run) first, or give one of the "
                             f"stores under {cache_dir()}: {', '.join(found)}" if found else
                             f"no store at {loc}; run `make extract` (python -m extract run) first (no store exists "
                             f"under {cache_dir()})")
        try:
            root = _open_group(loc, mode=mode)
        except Exception as err:  # zarr raises several types for a non-store folder
            raise StoreError(f"{loc} is not a readable avscene store: {err}") from err
        return cls(root, loc)

    @classmethod
    def create(
        cls,
        location: str | Path,
        clips: ClipTable,
        *,
        taxonomy: Taxonomy,
        data_root: str,
        clips_per_chunk: int,
        frame_choice: str = "middle",
        card: DatasetCard = DatasetCard(),
    ) -> "EmbeddingStore":
        """Create the root and clip table, or reopen an existing store holding the same clips (and frame choice; see
        :meth:`record_taxonomy` and :meth:`record_card`)."""
        if frame_choice not in FRAME_CHOICES:
            raise ValueError(f"frame_choice must be one of {tuple(FRAME_CHOICES)}, got {frame_choice!r}")
        loc = str(location)
        if store_exists(loc) and creation_interrupted(loc):
            logger.warning("%s: its creation was interrupted before the clip table was complete; creating it again", loc)
        elif store_exists(loc):
            store = cls.open(loc, mode="r+")
            if not store.attrs.get("ready"):
                raise StoreError(f"{loc}: an earlier creation did not finish; delete the folder and run again")
            store.check_run(list(clips.ids), frame_choice, taxonomy, card)
            return store
        root = _open_group(loc, mode="w")
        n = len(clips)
        seconds_max = max(1, int(clips.n_seconds.max(initial=0)))
        table = root.create_group("clips")
        for column, values in zip(
            _CLIP_TEXT_COLUMNS,
            (clips.ids, clips.labels, clips.splits, clips.video_paths, clips.audio_paths, clips.probe_errors),
        ):
            arr = table.create_array(column, shape=(n,), dtype=str, chunks=(max(n, 1),))
            arr[:] = np.asarray(values, dtype=str)
        seconds = table.create_array("n_seconds", shape=(n,), dtype="int32", chunks=(max(n, 1),), fill_value=0)
        seconds[:] = clips.n_seconds.astype("int32")
        for column, dtype in _CLIP_DECODE_COLUMNS.items():
            arr = table.create_array(column, shape=(n,), dtype=dtype, chunks=(max(n, 1),))
            arr[:] = np.asarray(getattr(clips, column), dtype=dtype)
        root.create_group("extractors")
        root.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "hop_seconds": HOP_SECONDS,
                "frame_choice": frame_choice,
                "frame_offset_seconds": FRAME_CHOICES[frame_choice],
                "audio_window_seconds": HOP_SECONDS,
                "classes": list(taxonomy.classes),
                "taxonomy": taxonomy.to_dict(),
                "data_root": data_root,
                "dataset_card": card.to_dict(),
                "clips_per_chunk": clips_per_chunk,
                "seconds_max": seconds_max,
                "created_utc": _utc_now(),
                "avscene_version": __version__,
                "ready": True,  # written last: the clip table is complete
            }
        )
        return cls(root, loc)

    @classmethod
    def wait_until_ready(cls, location: str, timeout_s: float) -> "EmbeddingStore":
        """Open a store that another process (shard 0) is creating, once its clip table is complete."""
        deadline = time.monotonic() + timeout_s
        while not store_ready(location):
            if time.monotonic() > deadline:
                raise StoreError(f"{location}: timed out after {timeout_s:.0f} s waiting for shard 0 to create it")
            time.sleep(0.5)
        return cls.open(location, mode="r+")

    @property
    def frame_choice(self) -> str:
        """Which frame of each second the store's visual embeddings saw (see ``FRAME_CHOICES``)."""
        return str(self.attrs.get("frame_choice", "middle"))  # stores written before the option: middle

    def check_frame_choice(self, frame_choice: str) -> None:
        """Refuse a run whose frame choice differs from the store's (one frame choice per store)."""
        if frame_choice != self.frame_choice:
            raise StoreError(f"{self.location}: written with --frame-choice {self.frame_choice}, this run asks for "
                             f"{frame_choice}; use another store")

    def check_run(self, ids: list[str], frame_choice: str, taxonomy: Taxonomy, card: DatasetCard) -> None:
        """Refuse a run over other clips or another frame choice; record the run's taxonomy and dataset card."""
        self.check_clip_ids(ids)
        self.check_frame_choice(frame_choice)
        self.record_taxonomy(taxonomy)
        self.record_card(card)

    def check_clip_ids(self, ids: list[str]) -> None:
        """Refuse a manifest whose clips differ from the store's clip table."""
        if list(self.clips.ids) != list(ids):
            raise StoreError(
                f"{self.location} holds another clip set ({len(self.clips)} clips) than this manifest "
                f"({len(ids)} clips); choose another STORE"
            )

    # ----------------------------------------------------------------- clip table
    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn a failed read (a corrupt or truncated chunk) into a StoreError naming the store and array."""
        try:
            yield
        except StoreError:
            raise
        except Exception as err:
            raise StoreError(
                f"{self.location}: cannot read {what} ({type(err).__name__}: {err}); the store is damaged: "
                "restore it from a copy, or delete that extractor group (or the store) and extract again"
            ) from err

    @property
    def clips(self) -> ClipTable:
        if self._clips is None:
            with self._reading("the clip table"):
                t = self.root["clips"]
                text = {c: _as_str(t[c][:]) for c in _CLIP_TEXT_COLUMNS}
                n_seconds = np.asarray(t["n_seconds"][:])
                decoded = {c: (_as_str(t[c][:]) if dtype == str else np.asarray(t[c][:])) if c in t else None
                           for c, dtype in _CLIP_DECODE_COLUMNS.items()}
            self._clips = ClipTable(
                ids=text["id"],
                labels=text["label"],
                splits=text["split"],
                n_seconds=n_seconds,
                video_paths=text["video_path"],
                audio_paths=text["audio_path"],
                probe_errors=text["probe_error"],
                **decoded,
            )
        return self._clips

    @property
    def data_root(self) -> str:
        """The dataset folder (or manifest's folder) the clip table's paths are relative to."""
        return str(self.attrs.get("data_root", ""))

    @property
    def dataset_card(self) -> DatasetCard:
        """What the dataset folder said of itself when extracted (synthetic or not); the default for a store written
        before cards were recorded."""
        return DatasetCard.from_dict(self.attrs.get("dataset_card", {}))

    def record_card(self, card: DatasetCard) -> None:
        """Record the dataset's card (a later run may find a card the first one did not)."""
        self._record_attr("dataset_card", card.to_dict())

    def _record_attr(self, key: str, value: dict[str, Any]) -> None:
        """Write root attribute ``key`` when it differs from ``value`` (logged), and refresh the cached attrs."""
        if self.attrs.get(key) != value:
            logger.info("%s: recording the %s %s", self.location, key.replace("_", " "), value)
            self.root.attrs[key] = value
            self.attrs = dict(self.root.attrs)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.attrs["classes"])

    @property
    def taxonomy(self) -> Taxonomy:
        """The dataset's taxonomy as extracted; a store written before taxonomies were recorded gets
        :func:`~extract.taxonomy.default_taxonomy` of its classes (TAU's when they are TAU scenes)."""
        if "taxonomy" in self.attrs:
            return Taxonomy.from_dict(self.attrs["taxonomy"])
        return default_taxonomy(self.classes)

    def record_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Record ``taxonomy`` (e.g. groupings added by a later run); its classes must be the store's."""
        if taxonomy.classes != self.classes:
            raise StoreError(f"{self.location} was extracted with classes {list(self.classes)}, this run has "
                             f"{list(taxonomy.classes)}; choose another STORE or the same --classes")
        self._record_attr("taxonomy", taxonomy.to_dict())

    @property
    def n_blocks(self) -> int:
        return -(-len(self.clips) // self.clips_per_chunk)

    def block_slice(self, block: int) -> slice:
        start = block * self.clips_per_chunk
        return slice(start, min(start + self.clips_per_chunk, len(self.clips)))

    # ----------------------------------------------------------------- extractor groups
    def has_group(self, name: str, view: str = DEFAULT_VIEW) -> bool:
        return _retry_torn(lambda: group_key(name, view) in self.root)

    def _group(self, name: str, view: str = DEFAULT_VIEW) -> zarr.Group:
        """One extractor view's group; its metadata may be rewritten by another shard meanwhile."""
        return _retry_torn(lambda: self.root[group_key(name, view)])

    def group_attrs(self, name: str, view: str = DEFAULT_VIEW) -> dict[str, Any]:
        if not self.has_group(name, view):
            raise StoreError(f"{self.location} has no embeddings of {name!r} (view {view!r})")
        return dict(self._group(name, view).attrs)

    def group_record(self, name: str, view: str = DEFAULT_VIEW) -> GroupRecord:
        """The typed record of one extractor view's group: the reads ``classify``, ``vadd`` and ``bench`` use."""
        attrs = self.group_attrs(name, view)
        return GroupRecord(
            spec=ExtractorSpec.from_dict(attrs["spec"]), fingerprint=str(attrs["fingerprint"]),
            weights_id=str(attrs["weights"]), training_run=attrs.get("training_run") or None,
            complete=bool(attrs.get("complete")),
        )

    def views(self, name: str) -> list[str]:
        """Views stored for extractor ``name``: ``original`` first, then augmented views by name."""
        key = f"extractors/{name}"
        if key not in self.root:
            return []
        found = sorted(v for v, _ in self.root[key].groups())
        return sorted(found, key=lambda v: v != DEFAULT_VIEW)

    def extractor_names(self, view: str = DEFAULT_VIEW) -> list[str]:
        if "extractors" not in self.root:
            return []
        return sorted(n for n, g in self.root["extractors"].groups() if view in g)

    def prepare_group(
        self,
        name: str,
        *,
        spec: dict[str, Any],
        fingerprint: str,
        weights: str,
        overwrite: bool = False,
        view: str = DEFAULT_VIEW,
        inference: dict[str, Any] | None = None,
        extra_attrs: dict[str, Any] | None = None,
    ) -> None:
        """Create the arrays of one extractor view, or check that existing ones match ``fingerprint``.

        ``inference`` (the run's resolved :class:`~extract.extractor.InferenceOptions`) is recorded in the
        group attrs; its precision is part of ``fingerprint``, the rest (batch size, compile) only of the record. ``extra_attrs`` (the training run of weights
        trained here, a view's transform) are stored beside the spec.
        """
        key = group_key(name, view)
        if key in self.root:
            old = dict(self.root[key].attrs)
            if old.get("fingerprint") == fingerprint and old.get("arrays_ready"):
                return
            if not overwrite and old.get("arrays_ready"):
                raise FingerprintMismatchError(
                    f"{self.location}: {name!r} was written with fingerprint {old.get('fingerprint')} "
                    f"(weights {old.get('weights')}), this run has {fingerprint} (weights {weights}); "
                    "pass --overwrite to replace those embeddings, or use another STORE"
                )
            self._delete(key)
        n, t, d, c = len(self.clips), self.seconds_max, int(spec["embedding_dim"]), self.clips_per_chunk
        g = self.root.require_group(key)
        g.create_array("embeddings", shape=(n, t, d), chunks=(c, t, d), dtype="float16", fill_value=0)
        g.create_array("valid", shape=(n, t), chunks=(c, t), dtype="bool", fill_value=False)
        g.create_array("status", shape=(n,), chunks=(c,), dtype="int8", fill_value=PENDING)
        g.create_array("error_stage", shape=(n,), chunks=(c,), dtype=str)
        g.create_array("error_message", shape=(n,), chunks=(c,), dtype=str)
        g.create_array("extract_seconds", shape=(n,), chunks=(c,), dtype="float32", fill_value=0)
        g.attrs.update(
            {
                "spec": spec,
                "fingerprint": fingerprint,
                "weights": weights,
                "view": view,
                **(extra_attrs or {}),
                "code_version": f"avscene {__version__} / {spec['name']} v{spec['version']}",
                "created_utc": _utc_now(),
                "inference": inference or {},
                "complete": False,
                "arrays_ready": True,  # written last: workers may write blocks now
            }
        )

    def _delete(self, key: str) -> None:
        if "://" in self.location:
            del self.root[key]
        else:
            shutil.rmtree(Path(self.location) / key, ignore_errors=True)
        self.root = _open_group(self.location, mode="r+")

    def wait_for_group(self, name: str, fingerprint: str, timeout_s: float, view: str = DEFAULT_VIEW) -> None:
        """Block until shard 0 has created ``name``'s arrays with ``fingerprint``."""
        deadline = time.monotonic() + timeout_s
        while True:
            root = _open_group(self.location, mode="r+")
            key = group_key(name, view)
            if _retry_torn(lambda: key in root):
                attrs = dict(_retry_torn(lambda: root[key]).attrs)
                if attrs.get("arrays_ready") and attrs.get("fingerprint") == fingerprint:
                    self.root = root
                    return
                if attrs.get("arrays_ready"):
                    raise FingerprintMismatchError(
                        f"{self.location}: {name!r} exists with fingerprint {attrs.get('fingerprint')}, "
                        f"this shard computes {fingerprint}"
                    )
            if time.monotonic() > deadline:
                raise StoreError(f"{self.location}: timed out waiting for shard 0 to create {name!r}")
            time.sleep(0.5)

    def status(self, name: str, view: str = DEFAULT_VIEW) -> np.ndarray:
        with self._reading(f"{group_key(name, view)}/status"):
            return np.asarray(self._group(name, view)["status"][:])

    def shard_rows(self, shard_index: int, shard_count: int) -> np.ndarray:
        """Row indexes of the blocks owned by shard ``shard_index`` of ``shard_count``."""
        blocks = range(shard_index, self.n_blocks, shard_count)
        return np.concatenate([np.arange(len(self.clips))[self.block_slice(b)] for b in blocks] or [np.zeros(0, int)])

    def count_status(self, name: str, shard_index: int = 0, shard_count: int = 1, view: str = DEFAULT_VIEW) -> Counter:
        """Clips of this shard by status: ``{DONE: n, FAILED: m, PENDING: k}``."""
        return Counter(self.status(name, view)[self.shard_rows(shard_index, shard_count)].tolist())

    def reset_failed(self, name: str, shard_index: int = 0, shard_count: int = 1, view: str = DEFAULT_VIEW) -> int:
        """Mark this shard's failed clips pending again (``--retry-failed``); returns how many.

        Only their status changes: their recorded errors stay until the redo writes the clips, and a run killed
        in between finds them pending and redoes them."""
        g = self._group(name, view)
        status_arr = g["status"]
        status = np.asarray(status_arr[:])
        rows = np.intersect1d(self.shard_rows(shard_index, shard_count), np.flatnonzero(status == FAILED))
        if len(rows) and g.attrs.get("complete"):
            g.attrs["complete"] = False  # pending clips again; finalize_if_complete recounts the timing
        for block in np.unique(rows // self.clips_per_chunk):
            sl = self.block_slice(int(block))
            chunk = status[sl].copy()
            chunk[rows[rows // self.clips_per_chunk == block] - sl.start] = PENDING
            status_arr[sl] = chunk
        return len(rows)

    def pending_blocks(self, name: str, shard_index: int = 0, shard_count: int = 1, view: str = DEFAULT_VIEW) -> list[int]:
        """Blocks of this shard (``block % shard_count == shard_index``) with a clip still pending."""
        status = self.status(name, view)
        return [
            b
            for b in range(shard_index, self.n_blocks, shard_count)
            if (status[self.block_slice(b)] == PENDING).any()
        ]

    def write_block(self, name: str, block: int, result: BlockResult, view: str = DEFAULT_VIEW) -> None:
        """Write one block; its status goes last so an interrupted write is redone on resume."""
        sl = self.block_slice(block)
        self.write_rows(name, np.arange(sl.start, sl.stop), result, view)

    def write_rows(self, name: str, rows: np.ndarray, result: BlockResult, view: str = DEFAULT_VIEW) -> None:
        """Write the results of ``rows`` (ascending, inside one block, e.g. a retry's failed clips); the rest of the
        block keeps its values. Status goes last so an interrupted write is redone on resume."""
        g = self._group(name, view)
        if result.embeddings.shape[0] != len(rows):
            raise ValueError(f"{len(rows)} rows to write, result has {result.embeddings.shape[0]}")
        if len(rows) == 0:
            return
        sl = self.block_slice(int(rows[0]) // self.clips_per_chunk)
        if rows[-1] >= sl.stop:
            raise ValueError(f"rows {rows[0]}..{rows[-1]} span more than one block")
        whole = len(rows) == sl.stop - sl.start
        values = (
            ("embeddings", result.embeddings.astype(np.float16)), ("valid", result.valid),
            ("error_stage", np.asarray(result.error_stage, dtype=str)),
            ("error_message", np.asarray(result.error_message, dtype=str)),
            ("extract_seconds", result.extract_seconds.astype(np.float32)), ("status", result.status.astype(np.int8)),
        )
        for array_name, data in values:
            if not whole:  # read-modify-write of the block's chunk
                block_data = np.asarray(g[array_name][sl])
                text = block_data.dtype.kind in "OTU"
                block_data = block_data.astype(object) if text else block_data  # no truncation to the old width
                block_data[rows - sl.start] = data
                data = np.asarray(block_data.tolist(), dtype=str) if text else block_data
            g[array_name][sl] = data

    def finalize_if_complete(self, name: str, view: str = DEFAULT_VIEW) -> bool:
        """Write the completion marker (and timing) when no clip is pending; returns completeness.

        A group already marked complete is left as it is (a rerun that had nothing to do writes nothing)."""
        g = self._group(name, view)
        if g.attrs.get("complete"):
            return True
        status = np.asarray(g["status"][:])
        if (status == PENDING).any():
            return False
        seconds = np.asarray(g["extract_seconds"][:])
        g.attrs.update(
            {
                "timing": {
                    "extract_seconds_total": float(seconds.sum()),
                    "clips_done": int((status == DONE).sum()),
                    "clips_failed": int((status == FAILED).sum()),
                },
                "completed_utc": _utc_now(),
                "complete": True,
            }
        )
        return True

    def errors(self, name: str, view: str = DEFAULT_VIEW) -> list[tuple[str, str, str]]:
        """(clip id, stage, message) of every failed clip."""
        g = self._group(name, view)
        failed = np.flatnonzero(np.asarray(g["status"][:]) == FAILED)
        stage, message = _as_str(g["error_stage"][:]), _as_str(g["error_message"][:])
        return [(str(self.clips.ids[i]), str(stage[i]), str(message[i])) for i in failed]

    # ----------------------------------------------------------------- reading for stage 2
    def usable_clips(self, names: list[str], split: str | None, views: tuple[str, ...] = (DEFAULT_VIEW,)) -> UsableClips:
        """The one rule every reader applies: a clip of ``split`` (None = all) is usable when every extractor of
        ``names`` embedded it (status done) in every view of ``views``.

        Augmented views hold visual extractors only: an audio extractor is asked for its ``original`` view whatever
        ``views`` says. Every other clip of the split is returned as excluded, with the first reason found (failed,
        with the recorded stage and message, or still pending).
        """
        clips = self.clips
        rows = np.arange(len(clips)) if split is None else np.flatnonzero(clips.splits == split)
        usable = np.ones(len(rows), bool)
        reasons: dict[int, str] = {}
        for name in names:
            visual = self.group_attrs(name)["spec"].get("modality") == "visual"
            for view in dict.fromkeys(views if visual else (DEFAULT_VIEW,)):
                key = name if view == DEFAULT_VIEW else f"{name}/{view}"
                status = self.status(name, view)[rows]
                lacking = np.flatnonzero(usable & (status != DONE))
                if len(lacking):
                    g = self._group(name, view)
                    stage, message = _as_str(g["error_stage"][:]), _as_str(g["error_message"][:])
                    for j in lacking:
                        i = int(rows[j])
                        reasons[i] = (f"{key}: failed [{stage[i]}] {message[i]}" if status[j] == FAILED
                                      else f"{key}: pending (its extraction has not finished)")
                usable &= status == DONE
        excluded = tuple(ExcludedClip(str(clips.ids[i]), str(clips.splits[i]), reasons[i]) for i in sorted(reasons))
        return UsableClips(rows[usable], excluded)

    def load_split(
        self, names: list[str], split: str | None, view: str = DEFAULT_VIEW, usable: UsableClips | None = None
    ) -> SplitData:
        """Load the usable clips of ``split`` (None = all) for ``names`` in ``view`` into RAM at once.

        ``usable`` (from :meth:`usable_clips`, e.g. over several views) replaces this call's own answer."""
        clips = self.clips
        usable = usable or self.usable_clips(names, split, (view,))
        rows = usable.rows
        fingerprints = {name: self.group_attrs(name, view)["fingerprint"] for name in names}
        embeddings, valid = {}, {}
        for name in names:
            g = self._group(name, view)
            with self._reading(f"{group_key(name, view)}/embeddings and valid"):
                embeddings[name] = _read_rows(g["embeddings"], rows)
                valid[name] = _read_rows(g["valid"], rows)
        return SplitData(
            ids=clips.ids[rows],
            labels=clips.labels[rows],
            n_seconds=clips.n_seconds[rows],
            embeddings=embeddings,
            valid=valid,
            fingerprints=fingerprints,
            excluded=usable.excluded,
        )

    # ----------------------------------------------------------------- export
    def export_h5(self, path: Path) -> None:
        """Write the clip table and every extractor view to HDF5 (same names, same dtypes)."""
        import h5py

        with h5py.File(path, "w") as h5:
            h5.attrs.update({k: str(v) for k, v in self.attrs.items()})
            text = h5py.string_dtype()
            clips = self.clips
            for column, values in zip(
                _CLIP_TEXT_COLUMNS,
                (clips.ids, clips.labels, clips.splits, clips.video_paths, clips.audio_paths, clips.probe_errors),
            ):
                h5.create_dataset(f"clips/{column}", data=values.astype(object), dtype=text)
            h5.create_dataset("clips/n_seconds", data=clips.n_seconds)
            for column, dtype in _CLIP_DECODE_COLUMNS.items():
                values = getattr(clips, column)
                h5.create_dataset(f"clips/{column}", data=values.astype(object) if dtype == str else values,
                                  dtype=text if dtype == str else None)
            for key, g in self._extractor_groups():
                for array_name, arr in g.arrays():
                    data = arr[:]
                    if data.dtype.kind in "OTU":
                        h5.create_dataset(f"{key}/{array_name}", data=_as_str(data).astype(object), dtype=text)
                    else:
                        h5.create_dataset(f"{key}/{array_name}", data=data, chunks=arr.chunks, compression="gzip")
                h5[key].attrs["json"] = json.dumps(dict(g.attrs))

    def _extractor_groups(self) -> Iterator[tuple[str, zarr.Group]]:
        for name, eg in self.root["extractors"].groups():
            for view, g in eg.groups():
                yield group_key(name, view), g


def report_excluded(excluded: tuple[ExcludedClip, ...] | list[ExcludedClip], location: str, what: str) -> list[dict[str, str]]:
    """Log the excluded clips (counted and named) of a reader's run; returns them for its ``excluded_clips`` metric."""
    unique = list(dict.fromkeys(excluded))
    if unique:
        shown = "; ".join(f"{e.clip} ({e.split}: {e.reason})" for e in unique[:20])
        logger.warning("%s: %d clip(s) excluded from %s, not embedded by every extractor it reads (`make info` lists "
                       "the recorded errors): %s%s", location, len(unique), what, shown, " ..." if len(unique) > 20 else "")
    return [e.to_dict() for e in unique]


def _retry_torn(read: Callable[[], T], attempts: int = 50, pause_s: float = 0.05) -> T:
    """``read()``, retried while it meets half-written metadata JSON.

    Local paths are written atomically by zarr, object stores replace whole objects, but fsspec's
    ``file://`` (and some network filesystems) truncate then write: another shard's reader can catch
    the moment between the two.
    """
    for _ in range(attempts - 1):
        try:
            return read()
        except json.JSONDecodeError:
            time.sleep(pause_s)
    return read()


def _open_group(location: str, mode: str) -> zarr.Group:
    """Open a local path or fsspec URL (local ``file://`` URLs create parent folders as needed)."""
    options = {"auto_mkdir": True} if location.startswith("file://") else None
    return _retry_torn(lambda: zarr.open_group(location, mode=mode, storage_options=options))


def _as_str(values: np.ndarray) -> np.ndarray:
    """Zarr's variable-length strings as a plain numpy unicode array."""
    return np.array(values.tolist(), dtype=str).reshape(values.shape)


def _read_rows(arr: zarr.Array, rows: np.ndarray) -> np.ndarray:
    """Read ``arr[rows]`` chunk by chunk: one read per chunk touched, not per row."""
    out = np.empty((len(rows),) + arr.shape[1:], dtype=arr.dtype)
    if len(rows) == 0:
        return out
    chunk = arr.chunks[0]
    block_of_row = rows // chunk
    for block in np.unique(block_of_row):
        sel = block_of_row == block
        start = int(block) * chunk
        data = arr[start : min(start + chunk, arr.shape[0])]
        out[sel] = data[rows[sel] - start]
    return out


def creation_interrupted(location: str) -> bool:
    """True for a group left by a killed :meth:`EmbeddingStore.create`: no attributes (they are written last)
    and nothing but the clip table and the empty extractors group. Any other group is never recreated."""
    root = _open_group(location, mode="r")
    if dict(root.attrs) or not set(root.keys()) <= {"clips", "extractors"}:
        return False
    return "extractors" not in root or not list(root["extractors"].keys())


def store_ready(location: str) -> bool:
    """A store exists at ``location`` and its clip table is complete."""
    return store_exists(location) and bool(_open_group(location, mode="r").attrs.get("ready"))


def local_stores(folder: Path, depth: int = 3) -> list[str]:
    """The stores in ``folder`` and its subfolders down to ``depth`` levels (``*.zarr`` folders with a root)."""
    found = [p for level in range(1, depth + 1) for p in sorted(Path(folder).glob("/".join(["*"] * level)))
             if p.suffix == ".zarr" and store_exists(str(p))]
    return [str(p) for p in found]


def store_exists(location: str) -> bool:
    if "://" not in location:
        return (Path(location) / "zarr.json").exists()
    try:
        _open_group(location, mode="r")
        return True
    except Exception:
        return False


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
