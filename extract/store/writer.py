"""Writing an embedding store: create it, prepare extractor groups, write blocks, finalize, retry failures.

Only the runner (and tools that build stores the runner's way: benchmarks, tests) uses this module; stage 2 reads
through :mod:`extract.store`. The on-disk format is :mod:`extract.store.format`'s.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from extract import __version__
from extract.dataset_card import DatasetCard
from extract.store.reader import EmbeddingStore
from avscene.run_folder import utc_now
from extract.store.format import (
    BLOCK_ARRAYS,
    CHECKSUM,
    CLIP_DECODE_COLUMNS,
    CLIP_TEXT_COLUMNS,
    DEFAULT_VIEW,
    DONE,
    FAILED,
    FRAME_CHOICES,
    HOP_SECONDS,
    PENDING,
    SCHEMA_VERSION,
    ClipTable,
    FingerprintMismatchError,
    StoreError,
    checksummed_codecs,
    delete_chunk,
    group_key,
    open_group,
    store_exists,
    storing_every_chunk,
)
from extract.store.shards import shard_rows
from extract.taxonomy import Taxonomy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockResult:
    """What a writer computed for one block of clips (all arrays cover exactly the block)."""

    embeddings: np.ndarray  # (n, T, D) float32
    valid: np.ndarray  # (n, T) bool
    status: np.ndarray  # (n,) int8
    error_stage: np.ndarray  # (n,) str
    error_message: np.ndarray  # (n,) str
    extract_seconds: np.ndarray  # (n,) float32


def default_clips_per_chunk(seconds_max: int, embedding_dim_max: int, target_bytes: int = 2 << 20) -> int:
    """Largest power of two in [8, 64] keeping a float16 chunk near ``target_bytes``."""
    per_clip = max(1, seconds_max * embedding_dim_max * 2)
    c = 8
    while c < 64 and (c * 2) * per_clip <= target_bytes:
        c *= 2
    return c


class StoreWriter(EmbeddingStore):
    """A store opened for writing: everything a reader does, plus creating, writing blocks and finalizing."""

    MODE = "r+"

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
    ) -> "StoreWriter":
        """Create the root and clip table, or reopen an existing store holding the same clips (and frame choice; see
        :meth:`record_taxonomy` and :meth:`record_card`).

        Nothing is ever deleted: a store whose creation was interrupted (no ``ready`` attribute yet) is resumed, its
        clip table written again in place; a non-empty folder that is not a store is refused. One process creates a
        store at a time: the runner holds the shard lock (:mod:`extract.store.lock`) around this call."""
        if frame_choice not in FRAME_CHOICES:
            raise ValueError(f"frame_choice must be one of {tuple(FRAME_CHOICES)}, got {frame_choice!r}")
        loc = str(location)
        if store_exists(loc) and not creation_interrupted(loc):
            store = cls.open(loc)
            if not store.attrs.get("ready"):
                raise StoreError(f"{loc}: holds extractor groups but no complete clip table; not a store avscene "
                                 "wrote: choose another STORE")
            store.check_run(list(clips.ids), frame_choice, taxonomy, card)
            return store
        if store_exists(loc):
            logger.warning("%s: its creation was interrupted before the clip table was complete; resuming it", loc)
        elif "://" not in loc and Path(loc).is_dir() and any(Path(loc).iterdir()):
            raise StoreError(f"{loc}: a non-empty folder that is not an avscene store; choose another STORE")
        root = open_group(loc, mode="a")
        n = len(clips)
        seconds_max = max(1, int(clips.n_seconds.max(initial=0)))
        table = root.require_group("clips")
        with storing_every_chunk():
            for column, values in zip(CLIP_TEXT_COLUMNS, clips.text_columns()):
                arr = table.create_array(column, shape=(n,), dtype=str, chunks=(max(n, 1),), overwrite=True,
                                         **checksummed_codecs())
                arr[:] = np.asarray(values, dtype=str)
            seconds = table.create_array("n_seconds", shape=(n,), dtype="int32", chunks=(max(n, 1),), fill_value=0,
                                         overwrite=True, **checksummed_codecs())
            seconds[:] = clips.n_seconds.astype("int32")
            for column, dtype in CLIP_DECODE_COLUMNS.items():
                arr = table.create_array(column, shape=(n,), dtype=dtype, chunks=(max(n, 1),), overwrite=True,
                                         **checksummed_codecs())
                arr[:] = np.asarray(getattr(clips, column), dtype=dtype)
        root.require_group("extractors")
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
                "created_utc": utc_now(),
                "avscene_version": __version__,
                "checksums": CHECKSUM,
                "ready": True,  # written last: the clip table is complete
            }
        )
        return cls(root, loc)

    # ----------------------------------------------------------------- checks of a run reopening the store
    def check_run(self, ids: list[str], frame_choice: str, taxonomy: Taxonomy, card: DatasetCard) -> None:
        """Refuse a run over other clips or another frame choice; record the run's taxonomy and dataset card."""
        self.check_clip_ids(ids)
        self.check_frame_choice(frame_choice)
        self.record_taxonomy(taxonomy)
        self.record_card(card)

    def check_frame_choice(self, frame_choice: str) -> None:
        """Refuse a run whose frame choice differs from the store's (one frame choice per store)."""
        if frame_choice != self.frame_choice:
            raise StoreError(f"{self.location}: written with --frame-choice {self.frame_choice}, this run asks for "
                             f"{frame_choice}; use another store")

    def check_clip_ids(self, ids: list[str]) -> None:
        """Refuse a manifest whose clips differ from the store's clip table."""
        if list(self.clips.ids) != list(ids):
            raise StoreError(
                f"{self.location} holds another clip set ({len(self.clips)} clips) than this manifest "
                f"({len(ids)} clips); choose another STORE"
            )

    def record_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Record ``taxonomy`` (e.g. groupings added by a later run); its classes must be the store's."""
        if taxonomy.classes != self.classes:
            raise StoreError(f"{self.location} was extracted with classes {list(self.classes)}, this run has "
                             f"{list(taxonomy.classes)}; choose another STORE or the same --classes")
        self._record_attr("taxonomy", taxonomy.to_dict())

    def record_card(self, card: DatasetCard) -> None:
        """Record the dataset's card (a later run may find a card the first one did not)."""
        self._record_attr("dataset_card", card.to_dict())

    def _record_attr(self, key: str, value: dict[str, Any]) -> None:
        """Write root attribute ``key`` when it differs from ``value`` (logged), and refresh the cached attrs."""
        if self.attrs.get(key) != value:
            logger.info("%s: recording the %s %s", self.location, key.replace("_", " "), value)
            self.root.attrs[key] = value
            self.attrs = dict(self.root.attrs)

    # ----------------------------------------------------------------- extractor groups
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
        group attrs; its precision is part of ``fingerprint``, the rest (batch size, compile) only of the record.
        ``extra_attrs`` (the training run of weights trained here, a view's transform) are stored beside the spec.
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
        codecs = checksummed_codecs() if self.checksums else {}  # an older store keeps its own format
        g.create_array("embeddings", shape=(n, t, d), chunks=(c, t, d), dtype="float16", fill_value=0, **codecs)
        g.create_array("valid", shape=(n, t), chunks=(c, t), dtype="bool", fill_value=False, **codecs)
        g.create_array("status", shape=(n,), chunks=(c,), dtype="int8", fill_value=PENDING, **codecs)
        g.create_array("error_stage", shape=(n,), chunks=(c,), dtype=str, **codecs)
        g.create_array("error_message", shape=(n,), chunks=(c,), dtype=str, **codecs)
        g.create_array("extract_seconds", shape=(n,), chunks=(c,), dtype="float32", fill_value=0, **codecs)
        g.attrs.update(
            {
                "spec": spec,
                "fingerprint": fingerprint,
                "weights": weights,
                "view": view,
                **(extra_attrs or {}),
                "code_version": f"avscene {__version__} / {spec['name']} v{spec['version']}",
                "created_utc": utc_now(),
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
        self.root = open_group(self.location, mode=self.MODE)

    # ----------------------------------------------------------------- blocks
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
        with storing_every_chunk():
            for array_name, data in values:
                arr = g[array_name]
                if not whole:  # read-modify-write of the block's chunk
                    block_data = np.asarray(arr[sl])
                    text = block_data.dtype.kind in "OTU"
                    block_data = block_data.astype(object) if text else block_data  # no truncation to the old width
                    block_data[rows - sl.start] = data
                    data = np.asarray(block_data.tolist(), dtype=str) if text else block_data
                arr[sl] = data

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
                "completed_utc": utc_now(),
                "complete": True,
            }
        )
        return True

    def reset_failed(self, name: str, shard_index: int = 0, shard_count: int = 1, view: str = DEFAULT_VIEW) -> int:
        """Mark this shard's failed clips pending again (``--retry-failed``); returns how many.

        Only their status changes: their recorded errors stay until the redo writes the clips, and a run killed
        in between finds them pending and redoes them."""
        status = self.status(name, view)
        rows = np.intersect1d(shard_rows(self, shard_index, shard_count), np.flatnonzero(status == FAILED))
        self.reset_rows(name, rows, view)
        return len(rows)

    def reset_rows(self, name: str, rows: np.ndarray, view: str = DEFAULT_VIEW) -> None:
        """Mark ``rows`` pending (status only) and the group incomplete, so that a rerun redoes them."""
        g = self._group(name, view)
        if len(rows) and g.attrs.get("complete"):
            g.attrs["complete"] = False  # pending clips again; finalize_if_complete recounts the timing
        status_arr, status = g["status"], self.status(name, view)
        with storing_every_chunk():
            for block in np.unique(rows // self.clips_per_chunk):
                sl = self.block_slice(int(block))
                chunk = status[sl].copy()
                chunk[rows[rows // self.clips_per_chunk == block] - sl.start] = PENDING
                status_arr[sl] = chunk

    def reset_blocks(self, name: str, blocks: list[int], view: str = DEFAULT_VIEW) -> None:
        """Drop every chunk of ``blocks`` in the group (a damaged block): its clips read pending, a rerun redoes them."""
        g = self._group(name, view)
        if blocks and g.attrs.get("complete"):
            g.attrs["complete"] = False
        for array_name in BLOCK_ARRAYS:
            for block in blocks:  # status first: a repair killed midway leaves the block pending
                delete_chunk(g[array_name], block)


def creation_interrupted(location: str) -> bool:
    """True for a group left by a killed :meth:`StoreWriter.create`: no attributes (they are written last)
    and nothing but the clip table and the empty extractors group. Any other group is never recreated."""
    root: zarr.Group = open_group(location, mode="r")
    if dict(root.attrs) or not set(root.keys()) <= {"clips", "extractors"}:
        return False
    return "extractors" not in root or not list(root["extractors"].keys())
