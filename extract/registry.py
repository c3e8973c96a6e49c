"""Extractor contracts as data, and the registry that maps names to them.

A spec says everything the decoder, the store and the tests need to know about a model without
building it: modality, embedding size, input rate/size, normalisation and where its weights come from.
Names follow ``arch.tag`` (e.g. ``mobilenet_v2.imagenet``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

if TYPE_CHECKING:
    from torch import nn

Modality = Literal["visual", "audio"]
MODALITIES: tuple[Modality, ...] = ("visual", "audio")


NO_DIGEST_PUBLISHED = "no digest published"
"""Start of ``WeightsSource.sha256_origin`` when the publisher gives no digest at all (e.g. OpenL3's files):
the file cannot be verified, which ``fetch``/``import``/loading log as a warning; the store still records
the full sha256 of the file actually loaded."""


@dataclass(frozen=True)
class WeightsSource:
    """One pretrained checkpoint file and its provenance."""

    filename: str
    url: str
    sha256: str  # full hex digest, or the hex prefix a publisher puts in its file names (torchvision: 8)
    sha256_origin: str  # who vouches for the digest: the publisher, or avscene from the official file
    license: str
    md5: str = ""  # where the publisher gives only an md5 (e.g. Zenodo), checked as well

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5 or self.sha256_origin.startswith(NO_DIGEST_PUBLISHED)):
            raise ValueError(
                f"{self.filename}: give a sha256 (or publisher's prefix) or an md5 to verify it by, or say "
                f"sha256_origin='{NO_DIGEST_PUBLISHED}: <where you looked>'"
            )

    @property
    def verifiable(self) -> bool:
        """Whether a published digest exists to check the file against."""
        return bool(self.sha256 or self.md5)


Interpolation = Literal["area", "bilinear", "bicubic"]
INTERPOLATIONS: tuple[Interpolation, ...] = ("area", "bilinear", "bicubic")
ResizeMode = Literal["shorter_side", "square"]
RESIZE_MODES: tuple[ResizeMode, ...] = ("shorter_side", "square")


@dataclass(frozen=True)
class TrainedWeights:
    """Weights with no published file: a local training run makes them (``train_command``).

    The run saves ``filename`` in the weights cache with a run record beside it (``<filename>.run.json``:
    run id, sha256 of the file, training config, data and metrics); the record vouches for the file.
    """

    filename: str
    train_command: str  # how to make them, e.g. "python -m extract train-iov --data D"
    license: str  # of the trained parameters (the training data's license applies)

    @property
    def record_filename(self) -> str:
        return self.filename + ".run.json"


@dataclass(frozen=True)
class VisualInput:
    """How a decoded frame becomes model input: resize, centre crop, normalise.

    ``resize``: ``shorter_side`` (default) scales the shorter side to ``resize_shorter_px``, aspect kept;
    ``square`` squashes the whole frame to ``resize_shorter_px`` x ``resize_shorter_px`` (torchvision
    ``Resize((s, s))``, as CSAIL's Places365 code and the first paper's code do).

    ``interpolation`` is the filter of the in-decoder resize: ``area`` (averaging; the default of the
    first extractors), or ``bilinear``/``bicubic`` where a model's published transforms name one.
    ``frame_offsets_seconds``: empty (default) = one frame per second, the one shown at the store's
    ``k + frame_offset_seconds``; otherwise the frames shown at ``k + offset`` for each offset, whose
    embeddings are summed (the second paper: frames 1 and 15 of each second at 30 fps = ``(0, 14/30)``).
    """

    resize_shorter_px: int
    crop_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Interpolation = "area"
    frame_offsets_seconds: tuple[float, ...] = ()
    resize: ResizeMode = "shorter_side"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        offsets = tuple(float(o) for o in self.frame_offsets_seconds)
        if any(not 0.0 <= o < 1.0 for o in offsets) or len(set(offsets)) != len(offsets):
            raise ValueError(f"frame_offsets_seconds must be distinct values in [0, 1), got {offsets}")
        object.__setattr__(self, "frame_offsets_seconds", offsets)

    @property
    def frame_size(self) -> tuple[int, int, Interpolation] | tuple[int, int, Interpolation, ResizeMode]:
        """``(resize_shorter_px, crop_px, interpolation)``, plus ``"square"`` for a squash: what the decoder
        must produce (see ``video_io.read_frames``)."""
        size = (self.resize_shorter_px, self.crop_px, self.interpolation)
        return size if self.resize == "shorter_side" else (*size, self.resize)


@dataclass(frozen=True)
class AudioInput:
    """How a 1-s audio window becomes model input.

    Second ``k`` of a clip is the window ``[k, k + 1)``; ``context_seconds`` widens it to
    ``[k - context_seconds, k + 1 + context_seconds)`` for models whose analysis frames reach beyond the
    second (OpenL3). Context comes from the file where it exists and is zero beyond the file's ends; with
    the default 0 the input is exactly the second.
    """

    sample_rate_hz: int
    channels: Literal["mono", "stereo"]
    context_seconds: float = 0.0

    def __post_init__(self) -> None:
        context = self.context_seconds * self.sample_rate_hz
        if self.context_seconds < 0 or abs(context - round(context)) > 1e-6:
            raise ValueError(
                f"context_seconds must be >= 0 and a whole number of samples at {self.sample_rate_hz} Hz, "
                f"got {self.context_seconds}"
            )

    @property
    def context_samples(self) -> int:
        """Extra samples on each side of the second."""
        return round(self.context_seconds * self.sample_rate_hz)

    @property
    def window_samples(self) -> int:
        """Samples per model input: the second plus context on both sides."""
        return self.sample_rate_hz + 2 * self.context_samples


@dataclass(frozen=True)
class ExtractorSpec:
    """The contract of one registered extractor.

    ``version`` changes whenever the numbers an extractor writes would change for the same weights
    (front end, pooling, preprocessing); it is part of the store fingerprint.
    """

    name: str
    modality: Modality
    embedding_dim: int
    version: str
    description: str
    weights: WeightsSource | TrainedWeights | None  # None: deterministic built-in parameters (debug extractors)
    visual: VisualInput | None = None
    audio: AudioInput | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"{self.name}: modality must be one of {MODALITIES}, got {self.modality!r}")
        if (self.modality == "visual") != (self.visual is not None) or (self.modality == "audio") != (
            self.audio is not None
        ):
            raise ValueError(f"{self.name}: give exactly the input description of its modality")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["visual"] is not None and not data["visual"]["frame_offsets_seconds"]:
            del data["visual"]["frame_offsets_seconds"]  # the default: spec dicts (fingerprints) as before the option
        if data["visual"] is not None and data["visual"]["resize"] == "shorter_side":
            del data["visual"]["resize"]  # likewise
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExtractorSpec":
        fields = dict(data)
        if fields.get("weights") is not None:
            w = fields["weights"]
            fields["weights"] = TrainedWeights(**w) if "train_command" in w else WeightsSource(**w)
        if fields.get("visual") is not None:
            v = fields["visual"]
            fields["visual"] = VisualInput(
                v["resize_shorter_px"], v["crop_px"], tuple(v["mean"]), tuple(v["std"]), v.get("interpolation", "area"),
                tuple(v.get("frame_offsets_seconds", ())), v.get("resize", "shorter_side"),
            )
        if fields.get("audio") is not None:
            fields["audio"] = AudioInput(**fields["audio"])
        return cls(**fields)


# An embedder class is built from its spec (random init) and may load a checkpoint file:
#   cls(spec) -> nn.Module mapping a batch to (B, D);  module.load_checkpoint(path) -> None
EmbedderClass = Callable[[ExtractorSpec], "nn.Module"]

_REGISTRY: dict[str, tuple[ExtractorSpec, EmbedderClass]] = {}
_ALIASES: dict[str, tuple[str, ...]] = {}


def register_extractor(spec: ExtractorSpec) -> Callable[[EmbedderClass], EmbedderClass]:
    """Class decorator adding ``spec`` to the registry; a duplicate name raises."""

    def decorate(cls: EmbedderClass) -> EmbedderClass:
        if spec.name in _REGISTRY or spec.name in _ALIASES:
            raise ValueError(f"extractor {spec.name!r} is registered twice")
        _REGISTRY[spec.name] = (spec, cls)
        return cls

    return decorate


def register_alias(alias: str, names: tuple[str, ...]) -> None:
    """Name a group of extractors (e.g. ``seed``); a duplicate raises."""
    if alias in _REGISTRY or alias in _ALIASES:
        raise ValueError(f"alias {alias!r} is registered twice")
    _ALIASES[alias] = names


def _load_all() -> None:
    from extract import models  # noqa: F401  (registers every extractor on import)


def list_extractors() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ExtractorSpec:
    return _lookup(name)[0]


def get_class(name: str) -> EmbedderClass:
    return _lookup(name)[1]


def _lookup(name: str) -> tuple[ExtractorSpec, EmbedderClass]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY) + sorted(_ALIASES))
        raise ValueError(f"unknown extractor {name!r}; known: {known}") from None


def resolve_names(names: str | list[str]) -> list[str]:
    """Expand a comma list (or list) of names and aliases into unique registry names, in order."""
    _load_all()
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        for name in _ALIASES.get(item, (item,)):
            get_spec(name)
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("no extractor named; give a comma list such as EXTRACTORS=mobilenet_v2.imagenet")
    return out
