"""Dataset manifests: the TAU Urban Audio-Visual Scenes 2021 layout, or a generic CSV.

A manifest lists clips (id = file stem, label, split, video and audio paths) and is validated as a whole:
one error lists the first missing files and counts them all; duplicate ids and unknown labels are refused with the file and line
that hold them. The TAU layout's paths must stay inside its folder; a user's CSV manifest may name media
anywhere (absolute paths, ``..``, symlinks).
"""
from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from extract.dataset_card import DatasetCard
from avscene.errors import ManifestError
from avscene.textfiles import csv_rows
from extract.taxonomy import TAU_SCENES, Taxonomy, read_grouping_file, tau_taxonomy

UNASSIGNED = "unassigned"
MediaKind = Literal["video", "audio"]


@dataclass(frozen=True)
class Clip:
    """One clip. ``audio_path`` None means the video's own audio track."""

    clip_id: str
    label: str  # '' when unknown
    split: str
    video_path: Path | None
    audio_path: Path | None


@dataclass(frozen=True)
class Manifest:
    """The clips of one dataset, under one data root, and the dataset's taxonomy."""

    root: Path
    clips: tuple[Clip, ...]
    taxonomy: Taxonomy
    source: Literal["tau", "csv"]
    card: DatasetCard = DatasetCard()  # the folder's avscene-dataset.json (synthetic or not)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.taxonomy.classes

    def ids(self) -> list[str]:
        return [c.clip_id for c in self.clips]

    def by_split(self, split: str) -> list[Clip]:
        return [c for c in self.clips if c.split == split]


@dataclass(frozen=True)
class _Table:
    """A parsed delimited file: header and (line number, row dict) pairs."""

    path: Path
    header: tuple[str, ...]
    rows: list[tuple[int, dict[str, str]]]


def _read_table(path: Path, delimiter: str, required: Sequence[str]) -> _Table:
    """Read a delimited file with a header (BOM and CRLF tolerant), checking the required columns."""
    if not path.is_file():
        raise ManifestError(f"{path}: file not found")
    records = csv_rows(path, delimiter)
    header = tuple(h.strip() for h in next(records, (0, []))[1])
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(f"{path}: header {list(header)} lacks column(s) {missing}; expected at least {list(required)}")
    rows = []
    for line, values in records:
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise ManifestError(f"{path}:{line}: {len(values)} fields, the header has {len(header)}")
        rows.append((line, {h: v.strip() for h, v in zip(header, values)}))
    return _Table(path, header, rows)


def _inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, refusing absolute paths and ``..`` that leave the root (checked lexically)."""
    if os.path.isabs(relative):
        raise ManifestError(f"{where}: path {relative!r} is absolute; paths must be relative to {root}")
    normal = os.path.normpath(relative)
    if normal == ".." or normal.startswith(".." + os.sep):
        raise ManifestError(f"{where}: path {relative!r} escapes the data root {root}")
    return root / normal


def _user_path(root: Path, path: str) -> Path:
    """A path of the user's own CSV manifest: absolute, or relative to its folder (``..`` and symlinks allowed)."""
    return Path(path) if os.path.isabs(path) else root / os.path.normpath(path)


MISSING_FILES_LISTED = 20  # a manifest error lists this many missing files, then counts the rest


def _check_files(clips: list[Clip], require: Collection[MediaKind], source: Path) -> None:
    """One error naming the first :data:`MISSING_FILES_LISTED` missing files of the required kinds and counting them
    all, in one pass (unreadable files fail per clip later)."""
    missing: dict[Path, None] = {}  # ordered, each file once
    for clip in clips:
        if "video" in require and clip.video_path is not None and not clip.video_path.exists():
            missing[clip.video_path] = None
        audio = clip.audio_path if clip.audio_path is not None else clip.video_path
        if "audio" in require and audio is not None and audio not in missing and not audio.exists():
            missing[audio] = None
    if missing:
        listed = "\n  ".join(str(p) for p in list(missing)[:MISSING_FILES_LISTED])
        more = len(missing) - MISSING_FILES_LISTED
        raise ManifestError(f"{source}: {len(missing)} media file(s) missing:\n  {listed}"
                            + (f"\n  ... and {more} more" if more > 0 else ""))


def read_tau(
    root: Path, require: Collection[MediaKind] = ("video", "audio"), subset: Collection[str] | None = None,
    groups: Path | None = None,
) -> Manifest:
    """Read the TAU Urban Audio-Visual Scenes 2021 layout under ``root``.

    Args:
        root: Folder with ``meta.csv``, ``evaluation_setup/fold1_{train,test,evaluate}.csv``, ``audio/``, ``video/``.
        require: Media kinds whose files must exist (``()`` for metadata only).
        subset: Clip ids to keep (others are dropped before the file check).
        groups: A grouping file adding groupings to TAU's own (see :mod:`extract.taxonomy`).
    """
    root = Path(root)
    meta = _read_table(root / "meta.csv", "\t", ("filename_audio", "filename_video", "scene_label"))
    setup = root / "evaluation_setup"
    train = _read_table(setup / "fold1_train.csv", "\t", ("filename_audio", "filename_video", "scene_label"))
    evaluate = _read_table(setup / "fold1_evaluate.csv", "\t", ("filename_audio", "filename_video", "scene_label"))
    test = _read_table(setup / "fold1_test.csv", "\t", ("filename_audio", "filename_video"))

    clips: dict[str, Clip] = {}
    for line, row in meta.rows:
        where = f"{meta.path}:{line}"
        audio = _inside(root, row["filename_audio"], where)
        video = _inside(root, row["filename_video"], where)
        if audio.stem != video.stem:
            raise ManifestError(f"{where}: audio {audio.name} and video {video.name} name different clips")
        if row["scene_label"] not in TAU_SCENES:
            raise ManifestError(f"{where}: unknown scene label {row['scene_label']!r}; known: {', '.join(TAU_SCENES)}")
        if audio.stem in clips:
            raise ManifestError(f"{where}: duplicate clip id {audio.stem}")
        clips[audio.stem] = Clip(audio.stem, row["scene_label"], UNASSIGNED, video, audio)

    for table, split in ((train, "train"), (evaluate, "test"), (test, "test")):
        for line, row in table.rows:
            where = f"{table.path}:{line}"
            stem = Path(row["filename_audio"]).stem
            if stem not in clips:
                raise ManifestError(f"{where}: clip {stem} is not in {meta.path}")
            clip = clips[stem]
            if "scene_label" in row and row["scene_label"] != clip.label:
                raise ManifestError(f"{where}: label {row['scene_label']!r} contradicts meta.csv ({clip.label!r})")
            if clip.split not in (UNASSIGNED, split):
                raise ManifestError(f"{where}: clip {stem} is in both {clip.split} and {split}")
            clips[stem] = Clip(clip.clip_id, clip.label, split, clip.video_path, clip.audio_path)

    kept = [c for c in clips.values() if subset is None or c.clip_id in subset]
    _check_files(kept, require, root)
    return Manifest(root, tuple(kept), _with_groups(tau_taxonomy(), groups), "tau", DatasetCard.read(root))


def _with_groups(taxonomy: Taxonomy, groups: Path | None) -> Taxonomy:
    """``taxonomy`` plus the groupings of the file ``groups`` (None: unchanged)."""
    if groups is None:
        return taxonomy
    try:
        return replace(taxonomy, groupings=taxonomy.groupings + read_grouping_file(groups, taxonomy.classes))
    except ValueError as err:
        raise ManifestError(f"{groups}: {err}") from None


def read_csv_manifest(
    path: Path, classes: Sequence[str] | None = None, require: Collection[MediaKind] = ("video", "audio"),
    groups: Path | None = None,
) -> Manifest:
    """Read a generic CSV manifest (columns ``video``, ``audio``, ``label``, ``split``, optional ``location``): paths
    absolute or relative to its folder, symlinks followed; media may live on another disk.

    ``video`` or ``audio`` may be empty but not both; an empty ``audio`` means the video's own track.
    ``label`` may be empty (unlabeled). ``classes`` None: the sorted labels found; the TAU scenes (``--classes
    tau``): TAU's taxonomy (grouping ``3``, locations from TAU stems). Otherwise each clip is its own location and
    the groupings are those of the file ``groups``. A ``location`` column (the recording location; empty = the clip's
    own) replaces either location rule: validation hold-outs and HEAR folds then keep its values apart.
    """
    path = Path(path)
    root = path.parent
    table = _read_table(path, ",", ("video", "split"))
    clips = []
    line_of: dict[str, int] = {}
    locations: dict[str, str] = {}
    for line, row in table.rows:
        where = f"{path}:{line}"
        video = _user_path(root, row["video"]) if row.get("video") else None
        audio = _user_path(root, row["audio"]) if row.get("audio") else None
        if video is None and audio is None:
            raise ManifestError(f"{where}: a row needs a video or an audio path")
        if not row["split"]:
            raise ManifestError(f"{where}: empty split")
        label = row.get("label", "")
        if classes is not None and label and label not in classes:
            raise ManifestError(f"{where}: unknown label {label!r}; known: {', '.join(classes)}")
        clip_id = (video or audio).stem
        if clip_id in line_of:
            raise ManifestError(f"{where}: duplicate clip id {clip_id} (file stem), first on line {line_of[clip_id]}")
        line_of[clip_id] = line
        clips.append(Clip(clip_id, label, row["split"], video, audio))
        if row.get("location"):
            locations[clip_id] = row["location"]
    _check_files(clips, require, path)
    found = tuple(sorted({c.label for c in clips if c.label}))
    names = tuple(classes) if classes is not None else found
    taxonomy = tau_taxonomy() if names == TAU_SCENES else Taxonomy(names)
    if "location" in table.header:
        taxonomy = replace(taxonomy, location_rule="manifest", locations=locations)
    return Manifest(root, tuple(clips), _with_groups(taxonomy, groups), "csv", DatasetCard.read(root))


def read_manifest(
    data: Path, require: Collection[MediaKind] = ("video", "audio"), classes: Sequence[str] | None = None,
    groups: Path | None = None,
) -> Manifest:
    """A TAU folder (with ``meta.csv``) or a CSV manifest file; ``classes`` applies to CSV manifests, ``groups`` (a
    grouping file) to both."""
    data = Path(data)
    if not data.exists():
        raise ManifestError(f"{data}: no such file or folder; DATA must be a TAU-layout folder with meta.csv or a .csv "
                            "manifest file")
    if data.is_dir() and (data / "meta.csv").exists():
        return read_tau(data, require, groups=groups)
    if data.is_file() and data.suffix.lower() == ".csv":
        return read_csv_manifest(data, classes, require, groups)
    raise ManifestError(f"{data}: expected a TAU-layout folder with meta.csv or a .csv manifest file; found neither")
