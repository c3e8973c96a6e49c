"""The official VADD protocol lists (IDT-ITI/Visual-Audio-Discrepancy-Detection) as explicit protocol items.

Each list file holds one Python literal per line, ``['<video file>', '<label>']``, parsed with
``ast.literal_eval`` (never ``eval``). The release's folder ``VADD dataset/`` holds ``vadd_<C>_pristine.txt``,
``vadd_<C>_swaps.txt`` (a byte copy of the pristine list) and ``vadd_<C>_manipulated.txt``: the swaps are implicit,
manipulated rows ``2k`` and ``2k+1`` exchange their audio tracks, and their labels always differ.
:func:`official_protocol` makes those swaps explicit. A lists folder may be that folder, a checkout of the release
(its ``VADD dataset/`` is used), or a folder with our names; the pristine list is ``vadd_<C>_pristine.txt``, else
the release's ``vadd_<C>_swaps.txt``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from avscene.paths import shared_dir
from extract.taxonomy import ClassSet
from vadd.protocol import ProtocolItem

LIST_KINDS = ("pristine", "manipulated")
RELEASE_FOLDER = "VADD dataset"  # the lists' folder in a checkout of IDT-ITI/Visual-Audio-Discrepancy-Detection
RELEASE_PRISTINE_KIND = "swaps"  # the release's other name of the pristine list (same bytes)


@dataclass(frozen=True)
class ListEntry:
    """One line of an official list: the clip id (file stem), its label and where it was read."""

    clip_id: str
    label: str
    line: int


def default_lists_dir() -> Path:
    """``$AVSCENE_SHARED/vadd`` (default ``../shared/vadd``)."""
    return shared_dir() / "vadd"


def lists_folder(lists_dir: Path) -> Path:
    """The folder holding the lists: ``lists_dir/VADD dataset`` in a checkout of the release, else ``lists_dir``."""
    release = Path(lists_dir) / RELEASE_FOLDER
    return release if release.is_dir() else Path(lists_dir)


def list_path(lists_dir: Path, classes: str, kind: str) -> Path:
    """``vadd_<classes>_<kind>.txt`` in :func:`lists_folder` (``classes``: TAU's class set name, ``10`` or ``3``);
    the pristine list may be the release's ``vadd_<classes>_swaps.txt``, and when both names exist they must hold
    the same lines."""
    if kind not in LIST_KINDS:
        raise ValueError(f"kind must be one of {LIST_KINDS}, got {kind!r}")
    folder = lists_folder(lists_dir)
    path = folder / f"vadd_{classes}_{kind}.txt"
    if kind != "pristine":
        return path
    release = folder / f"vadd_{classes}_{RELEASE_PRISTINE_KIND}.txt"
    if not path.is_file():
        return release if release.is_file() else path
    if release.is_file() and release.read_text(encoding="utf-8-sig").split() != path.read_text(encoding="utf-8-sig").split():
        raise ValueError(f"{release} and {path} both name the pristine {classes}-class list but differ; remove one")
    return path


def _clip_id(path: Path, line: int, name: str) -> str:
    """The file stem of a list entry; absolute paths and paths naming ``..`` are refused."""
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            raise ValueError(f"{path}:{line}: refusing path {name!r} (absolute or naming '..')")
    stem = PurePosixPath(name.replace("\\", "/")).stem
    if not stem:
        raise ValueError(f"{path}:{line}: empty video file name")
    return stem


def read_list(path: Path, classes: ClassSet) -> list[ListEntry]:
    """Parse one official list; any line that is not ``['<file>', '<label of classes>']`` fails with its number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: official VADD list not found (a folder with vadd_<C>_pristine.txt or the "
                                f"release's vadd_<C>_swaps.txt, and vadd_<C>_manipulated.txt, or a checkout of the "
                                f"release)")
    labels = classes.classes
    entries = []
    with open(path, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                value = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
                raise ValueError(f"{path}:{line}: not a Python literal ({type(err).__name__}): {text.strip()[:80]!r}") from None
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
                raise ValueError(f"{path}:{line}: expected ['<video file>', '<label>'], got {text.strip()[:80]!r}")
            name, label = value
            if label not in labels:
                raise ValueError(f"{path}:{line}: unknown label {label!r} for --classes {classes.name}; known: {', '.join(labels)}")
            entries.append(ListEntry(_clip_id(path, line, name), label, line))
    return entries


def official_protocol(lists_dir: Path, classes: ClassSet) -> list[ProtocolItem]:
    """Pristine items, then the manipulated rows' implicit swaps (rows 2k and 2k+1 exchange audio) made explicit.

    ``classes``: a class set of TAU's taxonomy, ``10`` (scenes) or ``3`` (indoor/outdoor/vehicle), whose name
    picks the lists ``vadd_<name>_*.txt``."""
    pristine = read_list(list_path(lists_dir, classes.name, "pristine"), classes)
    manipulated_path = list_path(lists_dir, classes.name, "manipulated")
    manipulated = read_list(manipulated_path, classes)
    if len(manipulated) % 2:
        raise ValueError(f"{manipulated_path}: {len(manipulated)} rows; swaps pair rows 2k and 2k+1, so the count must be even")
    items = [ProtocolItem(e.clip_id, e.clip_id, e.label, e.label, False) for e in pristine]
    for a, b in zip(manipulated[0::2], manipulated[1::2]):
        if a.label == b.label:
            raise ValueError(
                f"{manipulated_path}:{a.line}-{b.line}: swapped pair {a.clip_id} / {b.clip_id} has the same label "
                f"{a.label!r}; the protocol pairs rows 2k and 2k+1 across different labels"
            )
        items.append(ProtocolItem(a.clip_id, b.clip_id, a.label, b.label, True))
        items.append(ProtocolItem(b.clip_id, a.clip_id, b.label, a.label, True))
    seen: dict[str, int] = {}
    for item in items:
        seen[item.video_clip] = seen.get(item.video_clip, 0) + 1
    repeated = sorted(c for c, n in seen.items() if n > 1)
    if repeated:
        raise ValueError(f"{lists_dir}: {len(repeated)} clips appear more than once in the {classes.name}-class lists, e.g. {repeated[:3]}")
    return items
