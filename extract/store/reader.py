"""Reading an embedding store: the clip table, taxonomy, group records, usable clips, splits, errors and export.

Stage 2 (``classify``, ``vadd``) imports only this module; :mod:`extract.store.writer` writes stores and
:mod:`extract.store.shards` coordinates the processes writing one. The format is described in
:mod:`extract.store.format`, whose names are importable from here too.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import zarr

from avscene.paths import cache_dir
from extract.dataset_card import DatasetCard
from extract.registry import ExtractorSpec
from extract.store.format import (
    CLIP_DECODE_COLUMNS,
    CLIP_TEXT_COLUMNS,
    DEFAULT_VIEW,
    DONE,
    FAILED,
    SCHEMA_VERSION,
    ClipTable,
    StoreError,
    as_str,
    chunk_present,
    group_key,
    open_group,
    retry_torn,
    store_exists,
    unreadable_metadata,
)
from extract.taxonomy import Taxonomy, default_taxonomy
from extract.weights import BUILTIN, RANDOM_INIT

logger = logging.getLogger(__name__)


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


class EmbeddingStore:
    """A reader of a Zarr v3 embedding store at a local path or an fsspec URL (:class:`~extract.store.writer.StoreWriter`
    writes one)."""

    MODE = "r"  # how the root group is opened

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

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, location: str | Path) -> "EmbeddingStore":
        loc = str(location)
        if "://" not in loc and not Path(loc).exists():
            found = local_stores(cache_dir())
            raise StoreError(f"no store at {loc}; run `make extract` (python -m extract run) first, or give one of the "
                             f"stores under {cache_dir()}: {', '.join(found)}" if found else
                             f"no store at {loc}; run `make extract` (python -m extract run) first (no store exists "
                             f"under {cache_dir()})")
        try:
            root = open_group(loc, mode=cls.MODE)
        except Exception as err:  # zarr raises several types for a non-store folder
            bad = unreadable_metadata(loc)
            raise StoreError(f"{bad[0]}: truncated or not JSON ({err}); the store's metadata is damaged: restore it "
                             "from a copy" if bad else f"{loc} is not a readable avscene store: {err}") from err
        return cls(root, loc)

    @property
    def checksums(self) -> str | None:
        """The checksum every array carries (``"crc32c"``); None for a store written before checksums."""
        return self.attrs.get("checksums")

    @property
    def frame_choice(self) -> str:
        """Which frame of each second the store's visual embeddings saw (see ``FRAME_CHOICES``)."""
        return str(self.attrs.get("frame_choice", "middle"))  # stores written before the option: middle

    # ----------------------------------------------------------------- clip table
    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn a failed read (a corrupt or truncated chunk) into a StoreError naming the store and array."""
        try:
            yield
        except StoreError:
            raise
        except Exception as err:
            bad = unreadable_metadata(self.location)
            where = f"{bad[0]}: truncated or not JSON" if bad else f"{self.location}: cannot read {what}"
            raise StoreError(
                f"{where} ({type(err).__name__}: {err}); the store is damaged: `python -m extract verify --store "
                f"{self.location}` lists what; restore it from a copy, or repair and extract again"
            ) from err

    @property
    def clips(self) -> ClipTable:
        if self._clips is None:
            with self._reading("the clip table"):
                t = self.root["clips"]
                columns = {c: t[c] for c in (*CLIP_TEXT_COLUMNS, "n_seconds", *CLIP_DECODE_COLUMNS) if c in t}
                n = columns["n_seconds"].chunks[0]  # the writer stores each column as one chunk of N (at least 1)
                for column, arr in columns.items():  # checked before anything is allocated
                    if arr.ndim != 1 or arr.shape[0] not in (n, 0) or arr.chunks != (n,) or arr.shape != columns["id"].shape:
                        raise StoreError(f"{self.location}/clips/{column}/zarr.json: shape {arr.shape} (chunks "
                                         f"{arr.chunks}) is not the clip table's (each column one chunk of {n} clips); "
                                         "the store's metadata is damaged")
                text = {c: as_str(columns[c][:]) for c in CLIP_TEXT_COLUMNS}
                n_seconds = np.asarray(columns["n_seconds"][:])
                decoded = {c: (as_str(columns[c][:]) if dtype == str else np.asarray(columns[c][:])) if c in columns
                           else None for c, dtype in CLIP_DECODE_COLUMNS.items()}  # absent in older stores
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

    @property
    def n_blocks(self) -> int:
        return -(-len(self.clips) // self.clips_per_chunk)

    def block_slice(self, block: int) -> slice:
        start = block * self.clips_per_chunk
        return slice(start, min(start + self.clips_per_chunk, len(self.clips)))

    # ----------------------------------------------------------------- extractor groups
    def has_group(self, name: str, view: str = DEFAULT_VIEW) -> bool:
        return retry_torn(lambda: group_key(name, view) in self.root, self.location)

    def _group(self, name: str, view: str = DEFAULT_VIEW) -> zarr.Group:
        """One extractor view's group; its metadata may be rewritten by another shard meanwhile."""
        with self._reading(f"{group_key(name, view)}/zarr.json"):
            return retry_torn(lambda: self.root[group_key(name, view)], self.location)

    def array(self, name: str, array_name: str, view: str = DEFAULT_VIEW) -> zarr.Array:
        """One array of an extractor view, its shape and chunks checked against the clip table (before anything is
        allocated: a damaged shape must not make a reader allocate for 10^9 clips)."""
        key = f"{group_key(name, view)}/{array_name}"
        with self._reading(f"{key}/zarr.json"):
            group = self._group(name, view)  # retries a torn read itself
            arr = retry_torn(lambda: group[array_name], self.location)
        n, c = len(self.clips), self.clips_per_chunk
        expected = {1: (n,), 2: (n, self.seconds_max), 3: (n, self.seconds_max, arr.shape[-1])}.get(arr.ndim)
        if arr.shape != expected or arr.chunks[0] != c:
            raise StoreError(f"{self.location}/{key}/zarr.json: shape {arr.shape} (chunks {arr.chunks}) does not match "
                             f"the clip table ({n} clips, up to {self.seconds_max} s, {c} clips per chunk); the store's "
                             "metadata is damaged")
        return arr

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
        with self._reading(f"the views of {name}"):
            if key not in self.root:
                return []
            found = sorted(v for v, _ in self.root[key].groups())
        return sorted(found, key=lambda v: v != DEFAULT_VIEW)

    def extractor_names(self, view: str = DEFAULT_VIEW) -> list[str]:
        with self._reading("the extractor groups"):
            if "extractors" not in self.root:
                return []
            return sorted(n for n, g in self.root["extractors"].groups() if view in g)

    def status(self, name: str, view: str = DEFAULT_VIEW) -> np.ndarray:
        arr = self.array(name, "status", view)
        with self._reading(f"{group_key(name, view)}/status"):
            return np.asarray(arr[:])

    def error_texts(self, name: str, view: str = DEFAULT_VIEW) -> tuple[np.ndarray, np.ndarray]:
        """The recorded ``(error_stage, error_message)`` of every clip (``''`` where none)."""
        stage, message = self.array(name, "error_stage", view), self.array(name, "error_message", view)
        with self._reading(f"{group_key(name, view)}/error_stage and error_message"):
            return as_str(stage[:]), as_str(message[:])

    def errors(self, name: str, view: str = DEFAULT_VIEW) -> list[tuple[str, str, str]]:
        """(clip id, stage, message) of every failed clip."""
        failed = np.flatnonzero(self.status(name, view) == FAILED)
        stage, message = self.error_texts(name, view)
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
                    stage, message = self.error_texts(name, view)
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
            for array_name, into in (("embeddings", embeddings), ("valid", valid)):
                arr = self.array(name, array_name, view)
                with self._reading(f"{group_key(name, view)}/{array_name}"):
                    into[name] = self._read_done_rows(arr, rows, f"{group_key(name, view)}/{array_name}")
            self._refuse_non_finite(embeddings[name], rows, group_key(name, view))
        return SplitData(
            ids=clips.ids[rows],
            labels=clips.labels[rows],
            n_seconds=clips.n_seconds[rows],
            embeddings=embeddings,
            valid=valid,
            fingerprints=fingerprints,
            excluded=usable.excluded,
        )

    def _read_done_rows(self, arr: zarr.Array, rows: np.ndarray, key: str) -> np.ndarray:
        """Read ``arr[rows]`` (clips done) chunk by chunk, one read per chunk touched; a chunk that is not stored is
        damage (zarr would read it as zeros), never data."""
        out = np.empty((len(rows),) + arr.shape[1:], dtype=arr.dtype)
        chunk = arr.chunks[0]
        block_of_row = rows // chunk
        for block in np.unique(block_of_row):
            sel = block_of_row == block
            if not chunk_present(arr, int(block)):
                raise StoreError(
                    f"{self.location}/{key}: chunk {int(block)} is missing although clips "
                    f"{', '.join(self.clips.ids[rows[sel]][:5])} of its block are done; the store is damaged: "
                    f"`python -m extract verify --store {self.location} --repair`, then rerun the extraction")
            start = int(block) * chunk
            data = arr[start : min(start + chunk, arr.shape[0])]
            out[sel] = data[rows[sel] - start]
        return out

    def _refuse_non_finite(self, embeddings: np.ndarray, rows: np.ndarray, key: str) -> None:
        """Raise naming the clips whose embeddings hold NaN or inf (a writer never stores them: damage)."""
        bad = rows[~np.isfinite(embeddings).reshape(len(rows), -1).all(axis=1)]
        if len(bad):
            raise StoreError(
                f"{self.location}/{key}: {len(bad)} clip(s) hold NaN or inf embeddings ({', '.join(self.clips.ids[bad][:10])}"
                f"{' ...' if len(bad) > 10 else ''}); the store is damaged: `python -m extract verify --store "
                f"{self.location} --repair`, then rerun the extraction")

    # ----------------------------------------------------------------- export
    def export_h5(self, path: Path) -> None:
        """Write the clip table and every extractor view to HDF5 (same names, same dtypes)."""
        import h5py

        with h5py.File(path, "w") as h5:
            h5.attrs.update({k: str(v) for k, v in self.attrs.items()})
            text = h5py.string_dtype()
            clips = self.clips
            for column, values in zip(CLIP_TEXT_COLUMNS, clips.text_columns()):
                h5.create_dataset(f"clips/{column}", data=values.astype(object), dtype=text)
            h5.create_dataset("clips/n_seconds", data=clips.n_seconds)
            for column, dtype in CLIP_DECODE_COLUMNS.items():
                values = getattr(clips, column)
                h5.create_dataset(f"clips/{column}", data=values.astype(object) if dtype == str else values,
                                  dtype=text if dtype == str else None)
            for key, g in self._extractor_groups():
                for array_name, arr in g.arrays():
                    data = arr[:]
                    if data.dtype.kind in "OTU":
                        h5.create_dataset(f"{key}/{array_name}", data=as_str(data).astype(object), dtype=text)
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




def local_stores(folder: Path, depth: int = 3) -> list[str]:
    """The stores in ``folder`` and its subfolders down to ``depth`` levels (``*.zarr`` folders with a root)."""
    found = [p for level in range(1, depth + 1) for p in sorted(Path(folder).glob("/".join(["*"] * level)))
             if p.suffix == ".zarr" and store_exists(str(p))]
    return [str(p) for p in found]


