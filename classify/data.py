"""Stage-2 input: a split of the store in RAM, as labelled (clips, seconds, features) arrays."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.store import DEFAULT_VIEW, EmbeddingStore, ExcludedClip, StoreError, UsableClips
from extract.taxonomy import ClassSet

logger = logging.getLogger(__name__)


@dataclass
class ClipSet:
    """Clips of one split with per-extractor features ``(n, T, D_e)`` (float16 as stored, or float32) and a joint
    mask ``(n, T)``; ``modalities`` maps each extractor to ``visual`` or ``audio`` (the store's ``spec.modality``)."""

    ids: np.ndarray
    scene_labels: np.ndarray  # (n,) str, the store's labels
    targets: np.ndarray  # (n,) int64 index into ``classes`` (-1 when unlabeled)
    classes: tuple[str, ...]
    features: dict[str, np.ndarray]
    mask: np.ndarray
    fingerprints: dict[str, str]
    modalities: dict[str, str] = field(default_factory=dict)
    excluded: tuple[ExcludedClip, ...] = ()  # clips of the split left out by the store's usable-clips rule

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> "ClipSet":
        return ClipSet(
            self.ids[rows], self.scene_labels[rows], self.targets[rows], self.classes,
            {k: v[rows] for k, v in self.features.items()}, self.mask[rows], self.fingerprints, self.modalities,
            self.excluded,
        )

    @classmethod
    def concat(cls, parts: list["ClipSet"]) -> "ClipSet":
        """Rows of several ClipSets of the same extractors and classes (e.g. a split's views), in order."""
        first = parts[0]
        for other in parts[1:]:
            if other.classes != first.classes or list(other.features) != list(first.features):
                raise ValueError("cannot concatenate ClipSets of different classes or extractors")
        return ClipSet(
            np.concatenate([p.ids for p in parts]), np.concatenate([p.scene_labels for p in parts]),
            np.concatenate([p.targets for p in parts]), first.classes,
            {n: np.concatenate([p.features[n] for p in parts]) for n in first.features},
            np.concatenate([p.mask for p in parts]), first.fingerprints, first.modalities,
            tuple(dict.fromkeys(e for p in parts for e in p.excluded)),
        )


def extraction_coverage(store: EmbeddingStore, extractors: list[str], split: str, allow_incomplete: bool) -> dict | None:
    """None when the extraction of ``extractors`` (every view) is complete. Otherwise stop, unless
    ``allow_incomplete``: then the class coverage of ``split`` (usable clips / clips per class) is logged and returned,
    with the incomplete groups, for the run's ``metrics.json``."""
    incomplete = [f"{n}/{v}" for n in extractors for v in store.views(n) if not store.group_record(n, v).complete]
    if not incomplete:
        return None
    if not allow_incomplete:
        raise StoreError(f"{store.location}: the extraction of {', '.join(incomplete)} is not complete (clips still "
                         "pending); finish it (rerun `python -m extract run`), or pass --allow-incomplete to use the "
                         "clips done so far")
    clips = store.clips
    labels, usable = clips.labels[clips.splits == split], clips.labels[store.usable_clips(extractors, split).rows]
    coverage = {c: {"usable": int((usable == c).sum()), "clips": int((labels == c).sum())} for c in store.classes}
    logger.warning("%s: --allow-incomplete: %s not complete; %s clips usable per class: %s", store.location,
                   ", ".join(incomplete), split, ", ".join(f"{c} {v['usable']}/{v['clips']}" for c, v in coverage.items()))
    return {"incomplete_groups": incomplete, "split": split, "classes": coverage}


def extractor_modalities(store: EmbeddingStore, extractors: list[str]) -> dict[str, str]:
    """``spec.modality`` of each extractor's group in the store."""
    return {n: store.group_record(n).spec.modality for n in extractors}


def load_clips(
    store: EmbeddingStore, extractors: list[str], split: str | None, classes: ClassSet | str | int = "",
    view: str = DEFAULT_VIEW, usable: UsableClips | None = None,
) -> ClipSet:
    """Load ``split`` for ``extractors`` in one pass: the clips :meth:`~extract.store.EmbeddingStore.usable_clips`
    answers for them (``usable``, when the caller asked it once for several loads, e.g. over views or modalities).

    ``classes``: the targets, a class set of the store's taxonomy by name ('' = the store's own classes, ``3`` =
    TAU's indoor/outdoor/vehicle, ...) or a :class:`ClassSet` (e.g. a trained head's, on a store without labels).

    ``view`` other than ``original`` takes the visual extractors from that augmented view and the audio extractors
    from ``original`` (augmented views exist only for visual extractors); its clip ids get the suffix ``#<view>``.
    """
    modalities = extractor_modalities(store, extractors)
    class_set = classes if isinstance(classes, ClassSet) else store.taxonomy.class_set(classes)
    usable = usable or store.usable_clips(extractors, split, (view,))
    if view == DEFAULT_VIEW:
        parts = [store.load_split(extractors, split, usable=usable)]
    else:
        visual = [n for n in extractors if modalities[n] == "visual"]
        audio = [n for n in extractors if modalities[n] != "visual"]
        if not visual:
            raise ValueError(f"view {view!r} needs a visual extractor; {extractors} are all audio")
        parts = [store.load_split(visual, split, view, usable)] + ([store.load_split(audio, split, usable=usable)] if audio else [])
    features = {n: e for part in parts for n, e in part.embeddings.items()}
    valid = {n: v for part in parts for n, v in part.valid.items()}
    ids, labels = parts[0].ids, parts[0].labels
    return ClipSet(
        ids=ids if view == DEFAULT_VIEW else np.array([f"{clip}#{view}" for clip in ids], dtype=str),
        scene_labels=labels,
        targets=class_set.encode(labels),
        classes=class_set.classes,
        features={n: features[n] for n in extractors},
        mask=np.logical_and.reduce([valid[n] for n in extractors]),
        fingerprints={n: f for part in parts for n, f in part.fingerprints.items()},
        modalities=modalities,
        excluded=usable.excluded,
    )


def augmented_views(store: EmbeddingStore, extractors: list[str], kinds: tuple[str, ...] = ()) -> list[str]:
    """Augmented views (not ``original``) stored for every visual extractor of ``extractors``, by name; only those
    of ``kinds`` (``paper_aug`` for ``paper_aug_1``, ...) when given."""
    modalities = extractor_modalities(store, extractors)
    visual = [n for n in extractors if modalities[n] == "visual"]
    if not visual:
        return []
    common = set.intersection(*(set(store.views(n)) for n in visual)) - {DEFAULT_VIEW}
    return sorted(v for v in common if not kinds or v.rsplit("_", 1)[0] in kinds)


@dataclass(frozen=True)
class SplitLoader:
    """A store opened for stage 2: its splits loaded into RAM as :class:`ClipSet` (``store``: the store itself, with
    its clips, taxonomy, extractors and recorded errors)."""

    store: EmbeddingStore

    def load(self, split: str | None, extractors: str | list[str] | None = None, classes: ClassSet | str | int = "",
             view: str = DEFAULT_VIEW) -> ClipSet:
        """The usable clips of ``split`` (None = every clip) for ``extractors`` (comma list or list; None = every
        extractor in the store), targets of the class set ``classes`` (see :func:`load_clips`)."""
        if extractors is None:
            names = self.store.extractor_names()
        else:
            names = [n for n in extractors.split(",") if n] if isinstance(extractors, str) else list(extractors)
        return load_clips(self.store, names, split, classes, view)


def open_store(path: str | Path) -> SplitLoader:
    """Open an embedding store for reading its splits.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from avscene import extract, open_store
        >>> from avscene.demo.synthetic import make_demo_dataset
        >>> folder = Path(tempfile.mkdtemp())
        >>> data = make_demo_dataset(folder / "data", clips_per_scene=1, seconds=2, width=32, height=24)
        >>> _ = extract(data, folder / "emb.zarr", "debug_visual,debug_audio", device="cpu", progress=False)
        >>> reader = open_store(folder / "emb.zarr")
        >>> train = reader.load("train", ["debug_visual", "debug_audio"])
        >>> len(train), train.features["debug_visual"].shape, train.mask.shape, len(train.classes)
        (10, (10, 2, 16), (10, 2), 10)
        >>> reader.load("train", "debug_audio", classes=3).classes  # TAU's grouping of the ten scenes
        ('indoor', 'outdoor', 'vehicle')
    """
    return SplitLoader(EmbeddingStore.open(path))
