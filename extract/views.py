"""Augmented views: extra, seeded visual passes over the same clips, stored as ``extractors/<name>/<view>``.

Two kinds, each with the number of passes chosen on the command line (``--views paper_aug:1,randaug:1``
gives views ``paper_aug_1`` and ``randaug_1``):

* ``paper_aug`` -- the VADD seed code's second pass (``1_extract_features.py``): horizontal flip, then
  brightness ``b`` and contrast ``c`` in the OpenCV ``addWeighted`` sense with ``b, c = int(U(-1, 1) * 40)``
  (its ``adjust_img``: ``b > 0``: ``x (255 - b) / 255 + b``; ``b < 0``: ``x (255 + b) / 255``; contrast
  ``alpha = 131 (c + 127) / (127 (131 - c))``, ``x alpha + 127 (1 - alpha)``; rounded and saturated to
  uint8 as ``cv2.addWeighted`` does), then a rotation by ``int(U(-1, 1) * 5)`` degrees (counter-clockwise
  positive, bilinear, black fill, as ``imutils.rotate``). Parameters are drawn anew for every frame, as in
  the seed code.
* ``randaug`` -- the second paper's RandAugment subset: N = 2 ops drawn with replacement from
  (Sharpness, Contrast, Identity) at magnitude M = 14 on torchvision's 31-bin scale, i.e. an enhancement
  factor ``1 +- 0.9 * 14 / 30 = 1 +- 0.42`` with a random sign (``RandAugment._augmentation_space``).

Randomness is a function of (view seed, view name, clip id, second) only, so a view is the same whatever
the batch, shard, resume point or image size. Transforms act on the decoded model-size frames (after
resize and centre crop), not on the full-resolution frame as the seed code does; a rotation therefore
brings black corners into the crop a little sooner. Audio is never augmented.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from extract.decode_plan import DecodedClip

if TYPE_CHECKING:  # torch is imported lazily, where it runs
    import torch

ViewKind = Literal["paper_aug", "randaug"]
VIEW_KINDS: tuple[ViewKind, ...] = ("paper_aug", "randaug")
SEEDING = "numpy default_rng([seed, sha256(view name), sha256(clip id), second]) per frame"


@dataclass(frozen=True)
class PaperAugConfig:
    """The seed code's second visual pass (integers as it draws them)."""

    flip: bool = True
    brightness_max: int = 40
    contrast_max: int = 40
    rotation_max_deg: int = 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PaperAugConfig":
        return cls(**data)


@dataclass(frozen=True)
class RandAugConfig:
    """RandAugment restricted to ``ops``; torchvision's enhancement scale ``linspace(0, 0.9, bins)``."""

    ops: tuple[str, ...] = ("Sharpness", "Contrast", "Identity")
    num_ops: int = 2
    magnitude: int = 14
    num_magnitude_bins: int = 31
    max_factor_delta: float = 0.9

    def __post_init__(self) -> None:
        unknown = set(self.ops) - {"Sharpness", "Contrast", "Identity"}
        if unknown:
            raise ValueError(f"RandAugment ops must be among Sharpness, Contrast, Identity; got {sorted(unknown)}")
        if not 0 <= self.magnitude < self.num_magnitude_bins:
            raise ValueError(f"magnitude must be in [0, {self.num_magnitude_bins}), got {self.magnitude}")

    @property
    def factor_delta(self) -> float:
        """0.42 for M = 14 of 31 bins: factors are ``1 - 0.42`` or ``1 + 0.42``."""
        return self.max_factor_delta * self.magnitude / (self.num_magnitude_bins - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RandAugConfig":
        return cls(**{**data, "ops": tuple(data["ops"])})


@dataclass(frozen=True)
class View:
    """Augmented pass number ``index`` (1-based) of kind ``kind``."""

    kind: ViewKind
    index: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"view kind must be one of {VIEW_KINDS}, got {self.kind!r}")
        if self.index < 1:
            raise ValueError(f"view index must be >= 1, got {self.index}")

    @property
    def config(self) -> PaperAugConfig | RandAugConfig:
        """The papers' settings of this kind (fixed; recorded with the view)."""
        return PaperAugConfig() if self.kind == "paper_aug" else RandAugConfig()

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.index}"

    def to_dict(self) -> dict[str, Any]:
        """What the store records in the view group's attributes (and hashes into its fingerprint)."""
        return {"name": self.name, "kind": self.kind, "index": self.index, "seed": self.seed,
                "config": self.config.to_dict(), "seeding": SEEDING, "modality": "visual"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "View":
        view = cls(data["kind"], data["index"], data["seed"])
        if json.dumps(view.config.to_dict(), sort_keys=True) != json.dumps(data["config"], sort_keys=True):
            raise ValueError(f"view {view.name}: recorded config {data['config']} is not this version's {view.config}")
        return view

    def fingerprint(self, extractor_fingerprint: str) -> str:
        """The view group's fingerprint: the extractor's and the view's transform, seed included."""
        payload = json.dumps({"extractor": extractor_fingerprint, "view": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def frame_rng(self, clip_id: str, second: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _stable_int(self.name), _stable_int(clip_id), second])

    def params(self, clip_id: str, second: int) -> dict[str, Any]:
        """The random parameters of the frame of ``second`` in ``clip_id``."""
        rng = self.frame_rng(clip_id, second)
        c = self.config
        if isinstance(c, PaperAugConfig):
            u = rng.uniform(-1.0, 1.0, 3)
            return {"flip": c.flip, "brightness": int(u[0] * c.brightness_max),
                    "contrast": int(u[1] * c.contrast_max), "rotation_deg": int(u[2] * c.rotation_max_deg)}
        ops = []
        for _ in range(c.num_ops):
            op = c.ops[int(rng.integers(len(c.ops)))]
            sign = -1.0 if rng.integers(2) else 1.0
            ops.append((op, 1.0 + sign * c.factor_delta if op != "Identity" else 1.0))
        return {"ops": ops}

    def apply(self, frames: np.ndarray, clip_id: str) -> np.ndarray:
        """Augment ``(n_seconds, H, W, 3)`` uint8 frames of one clip (row k = second k); same shape and dtype."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (n, 3, H, W)
        out = torch.stack([self._apply_one(x[k], self.params(clip_id, k)) for k in range(len(x))]) if len(x) else x
        return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())

    def _apply_one(self, image: "torch.Tensor", params: dict[str, Any]) -> "torch.Tensor":
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        if "ops" in params:
            for op, factor in params["ops"]:
                if op == "Sharpness":
                    image = F.adjust_sharpness(image, factor)
                elif op == "Contrast":
                    image = F.adjust_contrast(image, factor)
            return image
        if params["flip"]:
            image = F.hflip(image)
        image = opencv_contrast(opencv_brightness(image, params["brightness"]), params["contrast"])
        if params["rotation_deg"]:
            # fill=None: zero padding inside the bilinear sampler, like cv2.warpAffine's BORDER_CONSTANT 0
            # (an explicit fill=0 would blend edge pixels with black a second time through a mask)
            image = F.rotate(image, float(params["rotation_deg"]), interpolation=InterpolationMode.BILINEAR)
        return image


def add_weighted(image: "torch.Tensor", alpha: float, gamma: float) -> "torch.Tensor":
    """``cv2.addWeighted(image, alpha, image, 0, gamma)`` on uint8: round half to even, saturate."""
    import torch

    return (image.float() * alpha + gamma).round().clamp(0, 255).to(torch.uint8)


def opencv_brightness(image: "torch.Tensor", brightness: int) -> "torch.Tensor":
    """The seed code's brightness shift in [-255, 255] (0 = unchanged)."""
    if brightness > 0:
        return add_weighted(image, (255 - brightness) / 255, brightness)
    if brightness < 0:
        return add_weighted(image, (255 + brightness) / 255, 0.0)
    return image


def opencv_contrast(image: "torch.Tensor", contrast: int) -> "torch.Tensor":
    """The seed code's contrast in [-127, 127] (0 = unchanged): ``alpha x + 127 (1 - alpha)``."""
    if contrast == 0:
        return image
    alpha = 131 * (contrast + 127) / (127 * (131 - contrast))
    return add_weighted(image, alpha, 127 * (1 - alpha))


def augment_clip(decoded: DecodedClip, view: View) -> DecodedClip:
    """The clip's frames (every image size) under ``view``; audio dropped, visual errors kept."""
    started = time.perf_counter()
    out = DecodedClip(decoded.clip_id, errors={m: e for m, e in decoded.errors.items() if m == "visual"},
                      valid={m: v for m, v in decoded.valid.items() if m == "visual"})
    if "visual" not in out.errors:
        out.frames = {key: apply_view(view, frames, decoded.clip_id) for key, frames in decoded.frames.items()}
    out.decode_seconds = decoded.decode_seconds + time.perf_counter() - started
    return out


def apply_view(view: View, frames: np.ndarray, clip_id: str) -> np.ndarray:
    """``view`` on ``(n_seconds, H, W, 3)`` frames, or on each offset of ``(n_seconds, n_offsets, H, W, 3)`` (the
    frames of one second share that second's parameters)."""
    if frames.ndim == 4:
        return view.apply(frames, clip_id)
    return np.stack([view.apply(frames[:, j], clip_id) for j in range(frames.shape[1])], axis=1)


def parse_views(text: str, seed: int = 0) -> tuple[View, ...]:
    """``"paper_aug:2,randaug:1"`` -> views paper_aug_1, paper_aug_2, randaug_1 (``""`` -> none)."""
    views: list[View] = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        kind, _, count = item.partition(":")
        try:
            n = int(count or "1")
        except ValueError:
            raise ValueError(f"--views item {item!r}: the count after ':' must be an integer") from None
        if kind not in VIEW_KINDS or n < 1:
            raise ValueError(f"--views item {item!r}: expected KIND[:COUNT] with KIND in {VIEW_KINDS}, COUNT >= 1")
        views.extend(View(kind, i, seed) for i in range(1, n + 1))  # type: ignore[arg-type]
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ValueError(f"--views {text!r} names a view twice")
    return tuple(views)


def _stable_int(text: str) -> int:
    """A process-independent 64-bit integer of ``text`` (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
