"""OpenL3 audio embeddings (Cramer et al., ICASSP 2019): a PyTorch port that reads the official Keras ``.h5``.

Twelve registered variants ``openl3_{linear,mel128,mel256}_{music,env}_{512,6144}`` share this module; the
first paper uses ``openl3_mel256_music_512``. Architecture (openl3 0.4 ``openl3/models.py``,
``_construct_*_audio_network`` and ``load_audio_embedding_model_from_path``), channels-last in Keras:
kapre front end (:mod:`extract.models.openl3_frontend`) -> BatchNorm -> 4 blocks of two 3x3 'same' convs
(64, 128, 256, 512 filters) each followed by BatchNorm + ReLU, except the last conv (``audio_embedding_layer``),
which has neither; 2x2/2 max-pools after blocks 1-3 -> max-pool ``AUDIO_POOLING_SIZES[repr][size]`` ->
flatten in channels-last order (``(h, w, c)``). The pooling sizes divide the final map exactly
((32, 24) or (16, 24) cells), so Keras' ``padding='same'`` adds nothing.

Per second: second ``k`` of a clip is the mean of the embeddings of the 1-s frames whose **centre** lies in
``[k, k + 1)``: centres ``k, k + hop, ..., k + 1 - hop`` (10 frames at the default 0.1-s hop), each covering
``[centre - 0.5, centre + 0.5)``. These are the frames ``openl3.get_audio_embedding(center=True, hop_size=hop)``
stamps ``k <= t < k + 1``, with one difference at the clip's end: openl3 stops at the first frame that reaches
the last sample (centres up to ``duration - 0.5``), while here every second averages all its frames, the later
ones zero beyond the file. The model takes ``[k - 0.5, k + 1.5)`` (``AudioInput.context_seconds=0.5``); before
the clip's start the audio is zero, as openl3's centring pads it.

Checkpoint: the official files keep Keras' layer names (``batch_normalization_1..8``, ``conv2d_1..7``,
``audio_embedding_layer``; openl3's code names only the last, Keras numbers the others, and these are the names
in the published files as torchopenl3's converted model uses them). :data:`KERAS_LAYERS` lists them with their
shapes; :func:`read_keras_weights` reads ``<layer>/<layer>/{kernel,bias,gamma,beta,moving_mean,
moving_variance}:0`` with h5py (gzip or plain, weights-only or full-model ``model_weights/`` layout) and
:func:`keras_to_torch` converts (conv ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``; BatchNorm epsilon 1e-3).
"""
from __future__ import annotations

import gzip
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from avscene.errors import CheckpointError
from extract.models.openl3_frontend import INPUT_REPRS, SAMPLE_RATE_HZ, InputRepr, KapreSpectrogram
from extract.registry import NO_DIGEST_PUBLISHED, AudioInput, ExtractorSpec, WeightsSource, register_extractor

ContentType = Literal["music", "env"]
CONTENT_TYPES: tuple[ContentType, ...] = ("music", "env")
EMBEDDING_SIZES = (512, 6144)
CONTEXT_SECONDS = 0.5  # frames centred in [k, k + 1) reach half a frame beyond the second on each side
KERAS_BN_EPSILON = 1e-3

# openl3 0.4 models.py AUDIO_POOLING_SIZES: final max-pool (freq, time) by input repr and embedding size.
AUDIO_POOLING_SIZES: dict[str, dict[int, tuple[int, int]]] = {
    "linear": {6144: (8, 8), 512: (32, 24)},
    "mel128": {6144: (4, 8), 512: (16, 24)},
    "mel256": {6144: (8, 8), 512: (32, 24)},
}

# Layers with weights in network order: (Keras name, "bn" features | "conv" (in, out)); kernels are 3x3.
KERAS_LAYERS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("batch_normalization_1", "bn", (1,)),
    ("conv2d_1", "conv", (1, 64)),
    ("batch_normalization_2", "bn", (64,)),
    ("conv2d_2", "conv", (64, 64)),
    ("batch_normalization_3", "bn", (64,)),
    ("conv2d_3", "conv", (64, 128)),
    ("batch_normalization_4", "bn", (128,)),
    ("conv2d_4", "conv", (128, 128)),
    ("batch_normalization_5", "bn", (128,)),
    ("conv2d_5", "conv", (128, 256)),
    ("batch_normalization_6", "bn", (256,)),
    ("conv2d_6", "conv", (256, 256)),
    ("batch_normalization_7", "bn", (256,)),
    ("conv2d_7", "conv", (256, 512)),
    ("batch_normalization_8", "bn", (512,)),
    ("audio_embedding_layer", "conv", (512, 512)),
)
# (conv, the BatchNorm after it) for the seven conv layers that have one; ReLU follows each pair.
_CONV_BN: tuple[tuple[str, str], ...] = tuple(
    (name, KERAS_LAYERS[i + 1][0]) for i, (name, kind, _) in enumerate(KERAS_LAYERS[:-1]) if kind == "conv"
)
_POOL_AFTER = (1, 3, 5)  # indices into _CONV_BN: the second conv of blocks 1-3 is followed by a 2x2/2 max-pool
_BN_WEIGHTS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_CONV_WEIGHTS = {"kernel": "weight", "bias": "bias"}
KERNEL_SIZE = 3


class CheckpointLayoutError(CheckpointError):
    """A Keras weights file does not have OpenL3's layers, weights or shapes."""


def published_weights() -> dict[str, tuple[int, ...]]:
    """Every weight of an official OpenL3 audio file as ``"<layer>/<weight>:0" -> Keras shape``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, kind, dims in KERAS_LAYERS:
        if kind == "bn":
            for weight in _BN_WEIGHTS:
                shapes[f"{layer}/{weight}:0"] = dims
        else:
            shapes[f"{layer}/kernel:0"] = (KERNEL_SIZE, KERNEL_SIZE, *dims)
            shapes[f"{layer}/bias:0"] = (dims[1],)
    return shapes


@dataclass(frozen=True)
class OpenL3Config:
    """One OpenL3 audio variant and its per-second pooling.

    ``hop_seconds`` is the inner hop between frame centres; it must split a second into whole, equal
    48-kHz steps (0.1, 0.125, 0.2, 0.25, 0.5, 1.0, ...). Changing it changes the numbers: the registered
    extractors use the default 0.1 s (openl3's default), stated in their spec description.
    """

    input_repr: InputRepr
    content_type: ContentType
    embedding_size: int
    hop_seconds: float = 0.1

    def __post_init__(self) -> None:
        if self.input_repr not in INPUT_REPRS:
            raise ValueError(f"input_repr must be one of {INPUT_REPRS}, got {self.input_repr!r}")
        if self.content_type not in CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {CONTENT_TYPES}, got {self.content_type!r}")
        if self.embedding_size not in EMBEDDING_SIZES:
            raise ValueError(f"embedding_size must be one of {EMBEDDING_SIZES}, got {self.embedding_size!r}")
        if not 0 < self.hop_seconds <= 1 or self.hop_samples * self.frames_per_second != SAMPLE_RATE_HZ:
            raise ValueError(
                f"hop_seconds must split 1 s into equal whole-sample steps at {SAMPLE_RATE_HZ} Hz "
                f"(e.g. 0.1, 0.2, 0.25, 0.5, 1.0), got {self.hop_seconds}"
            )

    @property
    def name(self) -> str:
        return f"openl3_{self.input_repr}_{self.content_type}_{self.embedding_size}"

    @property
    def hop_samples(self) -> int:
        """openl3 ``core.py``: ``hop_len = int(hop_size * TARGET_SR)``."""
        return int(self.hop_seconds * SAMPLE_RATE_HZ)

    @property
    def frames_per_second(self) -> int:
        """Frame centres in ``[k, k + 1)``."""
        return round(1.0 / self.hop_seconds)

    @property
    def weights_filename(self) -> str:
        """Official file (openl3 0.4 ``setup.py``: ``openl3_<modality>_<repr>_<content>-v0_4_0.h5.gz``)."""
        return f"openl3_audio_{self.input_repr}_{self.content_type}-v0_4_0.h5.gz"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OpenL3Config":
        return cls(**data)


def read_keras_weights(path: Path) -> dict[str, np.ndarray]:
    """All weights of a Keras HDF5 file as ``"<layer>/<weight>:0" -> array`` (gzip-compressed or plain).

    Layers are those named in the root (or ``model_weights/``) attribute ``layer_names``; each layer's
    ``weight_names`` attribute gives its datasets. Layers without weights (input, activations, pools) add nothing.

    Raises:
        CheckpointLayoutError: not an HDF5 file, or no ``layer_names``.
    """
    import h5py

    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        handle = h5py.File(io.BytesIO(raw), "r")
    except OSError as err:
        raise CheckpointLayoutError(f"{path}: not a Keras HDF5 weights file ({err})") from err
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in root.attrs:
            raise CheckpointLayoutError(f"{path}: no 'layer_names' attribute; not a Keras weights file")
        weights: dict[str, np.ndarray] = {}
        for layer in (_text(n) for n in root.attrs["layer_names"]):
            group = root[layer]
            for weight_name in (_text(n) for n in group.attrs.get("weight_names", [])):
                short = weight_name.rsplit("/", 1)[-1]  # 'conv2d_1/kernel:0' -> 'kernel:0'
                weights[f"{layer}/{short}"] = np.asarray(group[weight_name])
    return weights


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def keras_to_torch(weights: dict[str, np.ndarray], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map OpenL3 Keras weights to :class:`OpenL3AudioNet` state-dict keys, checking names and shapes strictly.

    Raises:
        CheckpointLayoutError: a missing, unexpected or misshapen weight (all of them listed).
    """
    expected = published_weights()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshapen = sorted(f"{k} {tuple(weights[k].shape)} (expected {expected[k]})" for k in set(expected) & set(weights)
                       if tuple(weights[k].shape) != expected[k])
    if missing or unexpected or misshapen:
        problems = [f"{label}: {', '.join(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)) if items]
        raise CheckpointLayoutError(f"{source}: not an OpenL3 audio checkpoint; " + "; ".join(problems))
    state: dict[str, torch.Tensor] = {}
    for layer, kind, _ in KERAS_LAYERS:
        for keras_weight, torch_weight in (_BN_WEIGHTS if kind == "bn" else _CONV_WEIGHTS).items():
            value = torch.from_numpy(np.ascontiguousarray(weights[f"{layer}/{keras_weight}:0"], dtype=np.float32))
            if keras_weight == "kernel":
                value = value.permute(3, 2, 0, 1).contiguous()  # (kh, kw, in, out) -> (out, in, kh, kw)
            state[f"layers.{layer}.{torch_weight}"] = value
        if kind == "bn":
            state[f"layers.{layer}.num_batches_tracked"] = torch.tensor(0)
    return state


def torch_to_keras(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Inverse of :func:`keras_to_torch`: an :class:`OpenL3AudioNet` state dict under Keras names and shapes."""
    weights: dict[str, np.ndarray] = {}
    for layer, kind, _ in KERAS_LAYERS:
        for keras_weight, torch_weight in (_BN_WEIGHTS if kind == "bn" else _CONV_WEIGHTS).items():
            value = state[f"layers.{layer}.{torch_weight}"].detach().cpu()
            if keras_weight == "kernel":
                value = value.permute(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
            weights[f"{layer}/{keras_weight}:0"] = value.numpy().astype(np.float32)
    return weights


class OpenL3AudioNet(nn.Module):
    """``(N, 48000)`` 1-s frames at 48 kHz -> ``(N, embedding_size)``, OpenL3's audio network in eval mode.

    Submodules are named after the Keras layers (``layers.conv2d_1`` ...), so the mapping to the file is 1:1.
    """

    def __init__(self, input_repr: InputRepr, embedding_size: int) -> None:
        super().__init__()
        self.frontend = KapreSpectrogram(input_repr)
        self.pool_size = AUDIO_POOLING_SIZES[input_repr][embedding_size]
        modules: dict[str, nn.Module] = {}
        for layer, kind, dims in KERAS_LAYERS:
            if kind == "bn":
                modules[layer] = nn.BatchNorm2d(dims[0], eps=KERAS_BN_EPSILON)
            else:
                modules[layer] = nn.Conv2d(dims[0], dims[1], KERNEL_SIZE, padding=KERNEL_SIZE // 2)
        self.layers = nn.ModuleDict(modules)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.layers["batch_normalization_1"](self.frontend(frames))  # (N, 1, F, T)
        for i, (conv, bn) in enumerate(_CONV_BN):
            x = torch.relu(self.layers[bn](self.layers[conv](x)))
            if i in _POOL_AFTER:
                x = nn.functional.max_pool2d(x, 2, 2)
        x = self.layers["audio_embedding_layer"](x)  # (N, 512, h, w)
        x = nn.functional.max_pool2d(x, self.pool_size, self.pool_size, ceil_mode=True)
        return x.permute(0, 2, 3, 1).flatten(1)  # Keras Flatten of (N, h, w, c)


CONFIGS: dict[str, OpenL3Config] = {
    c.name: c
    for c in (OpenL3Config(r, t, s) for r in INPUT_REPRS for t in CONTENT_TYPES for s in EMBEDDING_SIZES)
}


def _spec(config: OpenL3Config) -> ExtractorSpec:
    return ExtractorSpec(
        name=config.name,
        modality="audio",
        embedding_dim=config.embedding_size,
        version="1",
        description=(
            f"OpenL3 audio ({config.input_repr} input, {config.content_type} content, {config.embedding_size}-d; "
            f"kapre front end of openl3 0.4): second k = mean of the 1-s frames centred at k, k + "
            f"{config.hop_seconds:g}, ..., k + {1 - config.hop_seconds:g} s (48 kHz mono)"
        ),
        weights=WeightsSource(
            filename=config.weights_filename,
            url=f"https://github.com/marl/openl3/raw/models/{config.weights_filename}",
            sha256="",
            sha256_origin=(
                f"{NO_DIGEST_PUBLISHED}: marl/openl3 publishes none (its setup.py downloads unchecked) and the "
                "files on its 'models' branch are plain git blobs, not git-LFS pointers; loading checks every "
                "layer name and shape instead"
            ),
            license="CC BY 4.0 (OpenL3 model weights; openl3 code MIT)",
        ),
        audio=AudioInput(sample_rate_hz=SAMPLE_RATE_HZ, channels="mono", context_seconds=CONTEXT_SECONDS),
    )


class OpenL3(nn.Module):
    """``(B, C, 96000)`` float32 at 48 kHz (second ``k`` with 0.5 s on each side) -> ``(B, D)`` per-second mean.

    Args:
        spec: A registered ``openl3_*`` spec.
        config: Override of the registered variant's config (e.g. another ``hop_seconds``); the spec's
            description then no longer states the hop used.
        frames_per_batch: Frames run through the network at once (memory bound; does not change the numbers).
    """

    def __init__(self, spec: ExtractorSpec, config: OpenL3Config | None = None, frames_per_batch: int = 32) -> None:
        super().__init__()
        assert spec.audio is not None
        self.config = config or CONFIGS[spec.name]
        self.window_samples = spec.audio.window_samples
        self.frames_per_batch = frames_per_batch
        self.net = OpenL3AudioNet(self.config.input_repr, self.config.embedding_size)

    def load_checkpoint(self, path: Path) -> None:
        """Load an official Keras ``.h5`` (or ``.h5.gz``) strictly by layer name."""
        self.net.load_state_dict(keras_to_torch(read_keras_weights(path), str(path)), strict=True)

    def frames(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, C, window)`` -> ``(B, frames_per_second, 48000)``: frame ``i`` starts ``i * hop`` samples in,
        so its centre is ``k + i * hop`` s."""
        if waveform.shape[-1] != self.window_samples:
            raise ValueError(f"{self.config.name} expects (B, C, {self.window_samples}) windows, got "
                             f"{tuple(waveform.shape)}")
        mono = waveform.float().mean(dim=1)
        return mono.unfold(-1, SAMPLE_RATE_HZ, self.config.hop_samples)[:, : self.config.frames_per_second]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = self.frames(waveform)
        if frames.shape[0] == 0:
            return frames.new_zeros((0, self.config.embedding_size))
        flat = frames.reshape(-1, frames.shape[-1])
        embedded = torch.cat([self.net(flat[s : s + self.frames_per_batch])
                              for s in range(0, len(flat), self.frames_per_batch)])
        return embedded.view(frames.shape[0], frames.shape[1], -1).mean(dim=1)


for _config in CONFIGS.values():
    register_extractor(_spec(_config))(OpenL3)
