"""A dataset's taxonomy: its class names, coarser groupings of them, and what keeps validation location-disjoint.

The dataset reader (:mod:`extract.manifest`) makes it, the store records it, and stage 2 (``classify``,
``vadd``) takes it from the store. ``--classes NAME`` selects one :class:`ClassSet`: the dataset's own classes
(named by their count, e.g. ``10`` for TAU, ``2`` for a two-label CSV manifest) or one of its groupings (TAU:
``3`` = indoor/outdoor/vehicle; a CSV manifest: the columns of its grouping file).

Grouping file (``extract run --groups FILE``): a CSV with a header ``label,<grouping>[,<grouping>...]`` and one
row per class label; each column after ``label`` is one grouping, named by its header, mapping every class to
a group (a non-empty name). Example: ``label,coarse`` / ``bus,vehicle`` / ``park,outdoor``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from avscene.errors import ManifestError
from avscene.textfiles import csv_rows

TAU_SCENES: tuple[str, ...] = (
    "airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
    "street_pedestrian", "street_traffic", "tram",
)
IOV_CLASSES: tuple[str, ...] = ("indoor", "outdoor", "vehicle")
SCENE_TO_IOV: dict[str, str] = {
    "airport": "indoor", "shopping_mall": "indoor", "metro_station": "indoor",
    "street_pedestrian": "outdoor", "street_traffic": "outdoor", "park": "outdoor", "public_square": "outdoor",
    "bus": "vehicle", "metro": "vehicle", "tram": "vehicle",
}
TAU_IOV_NAME = "3"  # the name `--classes` knows TAU's indoor/outdoor/vehicle grouping by (the paper's 3 classes)
LocationRule = Literal["tau_stem", "clip", "manifest"]
LOCATION_RULES: tuple[str, ...] = ("tau_stem", "clip", "manifest")


def tau_recording_location(clip_id: str) -> str:
    """TAU stems are ``scene-city-location-segment``: clips of one recording location share the first three parts."""
    parts = clip_id.split("-")
    return "-".join(parts[:3]) if len(parts) == 4 else clip_id


@dataclass(frozen=True)
class ClassSet:
    """The classes a head is trained on, and the dataset label each clip's label maps to.

    ``label_to_class`` maps every dataset label to one of ``classes`` (identity for the dataset's own classes).
    """

    name: str  # what `--classes` calls it
    classes: tuple[str, ...]
    label_to_class: dict[str, str]

    def class_of(self, label: str) -> str:
        """The class of a dataset label ('' for an unlabelled clip or a label outside the taxonomy)."""
        return self.label_to_class.get(str(label), "")

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """Dataset labels ``(n,)`` -> class indexes ``(n,)`` int64, -1 where unlabelled."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(self.class_of(s), -1) for s in labels], dtype=np.int64)


@dataclass(frozen=True)
class Grouping:
    """A coarser class set: every class of the taxonomy mapped to one of ``groups``."""

    name: str
    groups: tuple[str, ...]
    group_of: dict[str, str]


@dataclass(frozen=True)
class Taxonomy:
    """Class names, named groupings of them, and the rule giving a clip's recording location: ``tau_stem`` (the
    location in a TAU file name), ``clip`` (each clip its own) or ``manifest`` (``locations``: a CSV manifest's
    ``location`` column; a clip it does not name is its own location)."""

    classes: tuple[str, ...]
    groupings: tuple[Grouping, ...] = ()
    location_rule: LocationRule = "clip"
    locations: dict[str, str] = field(default_factory=dict)  # clip id -> location, for the ``manifest`` rule
    _by_name: dict[str, ClassSet] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.location_rule not in LOCATION_RULES:
            raise ValueError(f"location_rule must be one of {LOCATION_RULES}, got {self.location_rule!r}")
        sets = {self.own_name: ClassSet(self.own_name, self.classes, {c: c for c in self.classes})}
        for g in self.groupings:
            if g.name in sets:
                raise ValueError(f"grouping name {g.name!r} is already used (the classes' own name is {self.own_name!r})")
            unmapped = [c for c in self.classes if c not in g.group_of]
            if unmapped:
                raise ValueError(f"grouping {g.name!r} maps no group to class(es) {unmapped}")
            strays = sorted({v for v in g.group_of.values() if v not in g.groups})
            if strays:
                raise ValueError(f"grouping {g.name!r} maps to group(s) {strays} outside its groups {list(g.groups)}")
            sets[g.name] = ClassSet(g.name, g.groups, {c: g.group_of[c] for c in self.classes})
        object.__setattr__(self, "_by_name", sets)

    @property
    def own_name(self) -> str:
        """The name of the dataset's own classes: their count (``10`` for TAU)."""
        return str(len(self.classes))

    @property
    def names(self) -> tuple[str, ...]:
        """Every name ``--classes`` accepts: the own classes first, then the groupings."""
        return tuple(self._by_name)

    @property
    def is_tau(self) -> bool:
        """Whether the classes are TAU's 10 scenes (the papers' dataset, whose published figures apply)."""
        return set(self.classes) == set(TAU_SCENES)

    def class_set(self, name: str | int = "") -> ClassSet:
        """The class set called ``name`` ('' = the dataset's own classes)."""
        key = str(name) if str(name) else self.own_name
        if key not in self._by_name:
            raise ValueError(f"--classes {key!r} is not defined by this dataset's taxonomy; it defines "
                             f"{', '.join(repr(n) for n in self.names)} (classes: {', '.join(self.classes) or 'none'})")
        return self._by_name[key]

    def class_set_with(self, classes: tuple[str, ...]) -> ClassSet | None:
        """The class set whose classes are exactly ``classes`` (in that order), None when there is none."""
        return next((s for s in self._by_name.values() if s.classes == tuple(classes)), None)

    def location(self, clip_id: str) -> str:
        """The key that keeps validation clips apart from training clips (TAU: the recording location)."""
        if self.location_rule == "tau_stem":
            return tau_recording_location(clip_id)
        return self.locations.get(clip_id, clip_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "groupings": [{"name": g.name, "groups": list(g.groups), "group_of": dict(g.group_of)} for g in self.groupings],
            "location_rule": self.location_rule,
            **({"locations": dict(self.locations)} if self.location_rule == "manifest" else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Taxonomy":
        groupings = tuple(Grouping(g["name"], tuple(g["groups"]), dict(g["group_of"])) for g in data.get("groupings", ()))
        return cls(tuple(data["classes"]), groupings, data.get("location_rule", "clip"), dict(data.get("locations", {})))


def tau_taxonomy(classes: tuple[str, ...] = TAU_SCENES) -> Taxonomy:
    """TAU's taxonomy (or a subset of its scenes): grouping ``3`` = indoor/outdoor/vehicle (``iov`` for a subset of
    three scenes, whose own classes are called ``3``), locations from the stem."""
    name = TAU_IOV_NAME if len(classes) != len(IOV_CLASSES) else "iov"
    iov = Grouping(name, IOV_CLASSES, {c: SCENE_TO_IOV[c] for c in classes})
    return Taxonomy(tuple(classes), (iov,), "tau_stem")


def default_taxonomy(classes: tuple[str, ...]) -> Taxonomy:
    """The taxonomy of a store written before taxonomies were recorded: TAU's when every class is a TAU scene
    (what stage 2 assumed then), else the store's classes alone, each clip its own location."""
    if classes and set(classes) <= set(TAU_SCENES):
        return tau_taxonomy(tuple(classes))
    return Taxonomy(tuple(classes))


def read_grouping_file(path: Path, classes: tuple[str, ...]) -> tuple[Grouping, ...]:
    """The groupings of a CSV ``label,<grouping>...`` file (see the module docstring), checked against ``classes``."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: grouping file not found")
    rows = list(csv_rows(path))
    header = [h.strip() for h in rows[0][1]] if rows else []
    if len(header) < 2 or header[0] != "label" or not all(header[1:]) or len(set(header)) != len(header):
        raise ManifestError(f"{path}: header must be label,<grouping name>[,...] with distinct names, got {header}")
    maps: dict[str, dict[str, str]] = {name: {} for name in header[1:]}
    for line, values in rows[1:]:
        if not any(v.strip() for v in values):
            continue
        values = [v.strip() for v in values]
        if len(values) != len(header) or not all(values):
            raise ManifestError(f"{path}:{line}: expected {len(header)} non-empty fields, got {values}")
        if values[0] not in classes:
            raise ManifestError(f"{path}:{line}: label {values[0]!r} is not a class of the dataset ({', '.join(classes)})")
        if values[0] in maps[header[1]]:
            raise ManifestError(f"{path}:{line}: label {values[0]!r} is listed twice")
        for name, group in zip(header[1:], values[1:]):
            maps[name][values[0]] = group
    missing = [c for c in classes if c not in maps[header[1]]]
    if missing:
        raise ManifestError(f"{path}: no row for class(es) {missing}")
    return tuple(Grouping(n, tuple(sorted(set(m.values()))), m) for n, m in maps.items())
