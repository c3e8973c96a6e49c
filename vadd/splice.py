"""Spliced VADD protocols built on the embedding cache: an item is a run of (visual second, audio second) pairs.

An item is a sequence of :class:`Span`\\ s, each ``length_s`` seconds of one clip's visual embeddings beside as many
seconds of one clip's audio embeddings; nothing is re-extracted. A span is manipulated when its audio comes from
another clip than its picture. Two generated kinds (seeded, from the test split):

- ``partial``: pristine items; fully swapped items (audio of a clip of another class); items where a contiguous
  run of 2-8 s of the clip's own audio is replaced by another clip's audio of another class; and long items of
  several clips of one recording location in a row (as one longer recording), spliced once, each beside its
  unspliced twin.
- ``same-class``: pristine items and full swaps between clips of the same class from different recording locations,
  which class comparison cannot see by construction.

``protocol.csv`` lists every span (:data:`SPAN_COLUMNS`), so a protocol can be published and rerun.
"""
from __future__ import annotations

import csv
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from classify.data import ClipSet
from avscene.textfiles import csv_rows
from vadd.protocol import ProtocolItem
from vadd.segments import true_runs

logger = logging.getLogger(__name__)

SPAN_COLUMNS = ("item", "kind", "start_s", "length_s", "video_clip", "video_start_s", "audio_clip", "audio_start_s",
                "video_label", "audio_label", "video_location", "audio_location")
SPLICE_S = (2, 8)  # a partial splice replaces this many seconds (inclusive range)
SPLICED_KINDS = ("partial", "same-class")


@dataclass(frozen=True)
class Span:
    """``length_s`` seconds: the picture of ``video_clip`` from ``video_start_s``, the sound of ``audio_clip`` from
    ``audio_start_s``."""

    video_clip: str
    video_start_s: int
    audio_clip: str
    audio_start_s: int
    length_s: int
    video_label: str
    audio_label: str
    video_location: str
    audio_location: str

    @property
    def manipulated(self) -> bool:
        return self.audio_clip != self.video_clip or self.audio_start_s != self.video_start_s


@dataclass(frozen=True)
class SplicedItem:
    """One test item: consecutive spans; ``kind`` says how it was made (pristine, swapped, partial, long, ...)."""

    kind: str
    spans: tuple[Span, ...]

    @property
    def length_s(self) -> int:
        return sum(s.length_s for s in self.spans)

    @property
    def manipulated(self) -> bool:
        return any(s.manipulated for s in self.spans)

    @property
    def _named(self) -> Span:  # the span that names the item: its first manipulated one, else its first
        return next((s for s in self.spans if s.manipulated), self.spans[0])

    # the names a ProtocolItem has, so per-item tables and plots read spliced items too
    video_clip = property(lambda self: self._named.video_clip)
    audio_clip = property(lambda self: self._named.audio_clip)
    video_label = property(lambda self: self._named.video_label)
    audio_label = property(lambda self: self._named.audio_label)

    def truth_segments(self) -> list[tuple[float, float]]:
        """``[start_s, end_s)`` of each run of manipulated seconds, merged across adjacent spans."""
        return [(float(a), float(b)) for a, b in true_runs(self.truth_per_second())]

    def truth_per_second(self) -> np.ndarray:
        return np.concatenate([np.full(s.length_s, s.manipulated) for s in self.spans])


@dataclass(frozen=True)
class ClipInfo:
    """What generating a protocol needs of a clip: label at the class set's granularity, location, seconds."""

    label: str
    location: str
    seconds: int


def clip_infos(clips: ClipSet, location_of: Callable[[str], str]) -> dict[str, ClipInfo]:
    """Per clip of ``clips``: its class, its recording location and its length (up to its last valid second)."""
    out = {}
    for i, clip in enumerate(clips.ids.tolist()):
        valid = np.flatnonzero(clips.mask[i])
        label = clips.classes[clips.targets[i]] if clips.targets[i] >= 0 else ""
        out[clip] = ClipInfo(label, location_of(clip), int(valid[-1]) + 1 if len(valid) else 0)
    return out


def _whole(video: str, audio: str, infos: dict[str, ClipInfo]) -> Span:
    v, a = infos[video], infos[audio]
    return Span(video, 0, audio, 0, min(v.seconds, a.seconds), v.label, a.label, v.location, a.location)


def _own(clip: str, start_s: int, length_s: int, info: ClipInfo) -> Span:
    return Span(clip, start_s, clip, start_s, length_s, info.label, info.label, info.location, info.location)


def from_protocol_items(items: list[ProtocolItem], infos: dict[str, ClipInfo]) -> list[SplicedItem]:
    """Whole-clip items (generated, official, CSV) as one span each, aligned on the seconds both clips have."""
    return [SplicedItem("swapped" if i.manipulated else "pristine", (_whole(i.video_clip, i.audio_clip, infos),))
            for i in items]


def _stratified_halves(clips: list[str], infos: dict[str, ClipInfo], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Clips class after class, each shuffled; alternating over the sequence gives two class-stratified halves."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for clip in clips:
        by_class[infos[clip].label].append(clip)
    ordered = [c for label in sorted(by_class) for c in rng.permutation(by_class[label]).tolist()]
    return ordered[0::2], ordered[1::2]


def _splice(video_spans: list[Span], donor: str, infos: dict[str, ClipInfo], rng: np.random.Generator) -> tuple[Span, ...]:
    """``video_spans`` (own audio) with one contiguous run of 2-8 s (at most the donor's length and all but one
    second of the item) replaced by ``donor``'s audio from a random offset."""
    total = sum(s.length_s for s in video_spans)
    longest = min(SPLICE_S[1], total - 1, infos[donor].seconds)
    length = int(rng.integers(SPLICE_S[0], longest + 1))
    start = int(rng.integers(0, total - length + 1))
    donor_start = int(rng.integers(0, infos[donor].seconds - length + 1))
    out, at = [], 0
    d = infos[donor]
    for s in video_spans:  # cut each span around [start, start + length)
        lo, hi = max(start, at), min(start + length, at + s.length_s)
        if hi <= lo:
            out.append(s)
        else:
            if lo > at:
                out.append(_own(s.video_clip, s.video_start_s, lo - at, infos[s.video_clip]))
            out.append(Span(s.video_clip, s.video_start_s + lo - at, donor, donor_start + lo - start, hi - lo,
                            s.video_label, d.label, s.video_location, d.location))
            if at + s.length_s > hi:
                out.append(_own(s.video_clip, s.video_start_s + hi - at, at + s.length_s - hi, infos[s.video_clip]))
        at += s.length_s
    return tuple(out)


def _donor(label: str, seconds: int, infos: dict[str, ClipInfo], rng: np.random.Generator) -> str | None:
    """A random clip of another class with at least ``seconds`` seconds, None when there is none."""
    candidates = sorted(c for c, i in infos.items() if i.label != label and i.seconds >= seconds)
    return candidates[int(rng.integers(len(candidates)))] if candidates else None


def generate_partial(infos: dict[str, ClipInfo], seed: int = 0) -> list[SplicedItem]:
    """The ``partial`` protocol over the clips of ``infos`` (the test split), reproducible for a seed.

    Half the clips (stratified by class) stay pristine; the other half alternate between full swaps and partial
    splices, their audio from random clips of other classes (a donor's audio may serve several items). Then every
    recording location with at least two clips gives a long item (its clips in id order, i.e. segment order for
    TAU stems) spliced once, and its unspliced twin. Clips shorter than 3 s cannot hold a partial splice: they are
    fully swapped instead.
    """
    rng = np.random.default_rng(seed)
    clips = sorted(c for c, i in infos.items() if i.seconds > 0)
    pristine, manipulated = _stratified_halves(clips, infos, rng)
    items = [SplicedItem("pristine", (_own(c, 0, infos[c].seconds, infos[c]),)) for c in pristine]
    for n, clip in enumerate(manipulated):
        info = infos[clip]
        partial = n % 2 == 1 and info.seconds >= SPLICE_S[0] + 1
        donor = _donor(info.label, SPLICE_S[0] if partial else 1, infos, rng)
        if donor is None:  # a single class: nothing to swap with
            continue
        if partial:
            items.append(SplicedItem("partial", _splice([_own(clip, 0, info.seconds, info)], donor, infos, rng)))
        else:
            items.append(SplicedItem("swapped", (_whole(clip, donor, infos),)))
    by_location: dict[str, list[str]] = defaultdict(list)
    for clip in clips:
        by_location[infos[clip].location].append(clip)
    for location in sorted(by_location):
        run = sorted(by_location[location])
        if len(run) < 2:
            continue
        spans = [_own(c, 0, infos[c].seconds, infos[c]) for c in run]
        donor = _donor(infos[run[0]].label, SPLICE_S[0], infos, rng)
        if donor is not None:
            items += [SplicedItem("long-pristine", tuple(spans)), SplicedItem("long-partial", _splice(spans, donor, infos, rng))]
    return items


def generate_same_class(infos: dict[str, ClipInfo], seed: int = 0) -> list[SplicedItem]:
    """The ``same-class`` protocol over the clips of ``infos``: balanced pristine items and audio exchanges between
    two clips of one class, from different recording locations where the class has several.

    A class recorded at a single location pairs clips of that location (another recording, the same place), with a
    warning; :func:`same_location_items` counts them.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for clip in sorted(c for c, i in infos.items() if i.seconds > 0):
        by_class[infos[clip].label][infos[clip].location].append(clip)
    candidates = []
    for label in sorted(by_class):
        # the class's locations in turn (largest first), each shuffled: neighbours come from different locations
        queues = sorted((rng.permutation(c).tolist() for c in by_class[label].values()), key=len, reverse=True)
        ordered = [q[k] for k in range(len(queues[0])) for q in queues if k < len(q)]
        candidates += [(ordered[k], ordered[k + 1]) for k in range(0, len(ordered) - 1, 2)]
    candidates = [candidates[j] for j in rng.permutation(len(candidates))]
    candidates.sort(key=lambda p: infos[p[0]].location == infos[p[1]].location)  # other locations first (stable)
    n_clips = sum(len(c) for locations in by_class.values() for c in locations.values())
    pairs = candidates[: n_clips // 4]  # each pair: 2 clips, 2 swapped items, beside 2 pristine items of 2 other clips
    paired = {c for p in pairs for c in p}
    pristine = sorted(c for locations in by_class.values() for clips in locations.values() for c in clips if c not in paired)
    items = [SplicedItem("pristine", (_own(c, 0, infos[c].seconds, infos[c]),))
             for c in (pristine[j] for j in sorted(rng.permutation(len(pristine))[: 2 * len(pairs)]))]
    items += [SplicedItem("same-class", (_whole(v, a, infos),)) for a, b in pairs for v, a in ((a, b), (b, a))]
    same_location = sum(infos[a].location == infos[b].location for a, b in pairs)
    if same_location:
        logger.warning("same-class protocol: %d of %d pairs are two clips of one recording location (their class has "
                       "a single location in this split)", same_location, len(pairs))
    return items


def same_location_items(items: list[SplicedItem]) -> int:
    """Manipulated items whose foreign audio comes from the picture's own recording location."""
    return sum(any(s.manipulated and s.video_location == s.audio_location for s in i.spans) for i in items)


def write_spliced_csv(path: Path, items: list[SplicedItem]) -> None:
    """One row per span (:data:`SPAN_COLUMNS`); ``start_s`` is the span's first second within its item."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SPAN_COLUMNS)
        for number, item in enumerate(items, start=1):
            at = 0
            for s in item.spans:
                writer.writerow([number, item.kind, at, s.length_s, s.video_clip, s.video_start_s, s.audio_clip,
                                 s.audio_start_s, s.video_label, s.audio_label, s.video_location, s.audio_location])
                at += s.length_s


def is_spliced_csv(path: Path) -> bool:
    """Whether ``path`` starts with the header :func:`write_spliced_csv` writes."""
    header = next(csv_rows(path), (0, None))[1]
    return header is not None and tuple(h.strip() for h in header) == SPAN_COLUMNS


def read_spliced_csv(path: Path) -> list[SplicedItem]:
    """Read :func:`write_spliced_csv`'s file back, rejecting malformed or non-contiguous rows by line number."""
    spans: dict[int, list[Span]] = defaultdict(list)
    kinds: dict[int, str] = {}
    records = csv_rows(path)
    next(records, None)
    for line, row in records:
        if not row:
            continue
        try:
            if len(row) != len(SPAN_COLUMNS):
                raise ValueError(f"expected {len(SPAN_COLUMNS)} fields")
            number, start_s, length_s, video_start_s, audio_start_s = (int(row[i]) for i in (0, 2, 3, 5, 7))
            if length_s < 1 or min(start_s, video_start_s, audio_start_s) < 0 or not all(row[4:12:2]):
                raise ValueError("needs clip names, lengths >= 1 and starts >= 0")
            expected_start = sum(s.length_s for s in spans[number])
            if start_s != expected_start:
                raise ValueError(f"item {number}'s span starts at {start_s} s, its previous spans end at {expected_start} s")
        except ValueError as e:
            raise ValueError(f"{path}:{line}: {e}: {row}") from None
        kinds.setdefault(number, row[1])
        spans[number].append(Span(row[4], video_start_s, row[6], audio_start_s, length_s, *row[8:12]))
    return [SplicedItem(kinds[n], tuple(spans[n])) for n in sorted(spans)]


def clips_of(items: list[SplicedItem]) -> set[str]:
    """Every clip an item takes a picture or a sound from."""
    return {c for item in items for s in item.spans for c in (s.video_clip, s.audio_clip)}


@dataclass
class AssembledItems:
    """Items as windows of a ClipSet (for the heads, which attend over a window's seconds) and per-item rows."""

    windows: ClipSet  # (n_windows, window_s, D_e) per extractor
    rows: list[np.ndarray]  # per item, its window rows in order

    def per_second(self, per_window: np.ndarray, item: int, length_s: int) -> np.ndarray:
        """Item ``item``'s ``(length_s, ...)`` slice of a per-window array ``(n_windows, window_s, ...)``."""
        return np.concatenate(per_window[self.rows[item]])[:length_s]


def assemble(items: list[SplicedItem], clips: ClipSet, window_s: int) -> AssembledItems:
    """Gather each item's visual seconds (visual extractors) and audio seconds (audio extractors) from ``clips`` and
    cut them into windows of ``window_s`` seconds (the last padded, masked)."""
    index = {c: i for i, c in enumerate(clips.ids.tolist())}
    missing = sorted(clips_of(items) - index.keys())
    if missing:
        raise ValueError(f"{len(missing)} protocol clips have no embeddings in the store, e.g. {missing[:5]}")
    features: dict[str, list[np.ndarray]] = {n: [] for n in clips.features}
    masks, rows, n_windows = [], [], 0
    for item in items:
        n = -(-item.length_s // window_s)
        for name, x in clips.features.items():
            visual = clips.modalities.get(name, "visual") == "visual"
            seconds = [x[index[s.video_clip if visual else s.audio_clip],
                         (s.video_start_s if visual else s.audio_start_s) + np.arange(s.length_s)] for s in item.spans]
            features[name].append(_pad(np.concatenate(seconds), n * window_s).reshape(n, window_s, -1))
        mask = np.concatenate([clips.mask[index[s.video_clip], s.video_start_s + np.arange(s.length_s)]
                               & clips.mask[index[s.audio_clip], s.audio_start_s + np.arange(s.length_s)] for s in item.spans])
        masks.append(_pad(mask, n * window_s).reshape(n, window_s))
        rows.append(np.arange(n_windows, n_windows + n))
        n_windows += n
    windows = ClipSet(
        np.array([f"item{i}" for i, r in enumerate(rows) for _ in r]), np.array([""] * n_windows),
        np.full(n_windows, -1), clips.classes, {k: np.concatenate(v) for k, v in features.items()},
        np.concatenate(masks), clips.fingerprints, clips.modalities,
    )
    return AssembledItems(windows, rows)


def _pad(x: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate([x, np.zeros((length - len(x), *x.shape[1:]), x.dtype)])
