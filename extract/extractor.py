"""A built extractor: spec + module + where its parameters came from, with one batched ``embed`` call."""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from avscene.errors import DeviceError
from extract.registry import ExtractorSpec, TrainedWeights, get_class, get_spec
from extract.weights import BUILTIN, RANDOM_INIT, resolve_weights, training_record, weights_id as checkpoint_id

if TYPE_CHECKING:  # torch is imported lazily, where it runs
    import torch

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")
CUDA_BATCH_SIZE = 64  # default frames / 1-s windows per forward pass on a GPU
CPU_BATCH_SIZE = 8  # on CPU: 1.4-1.7x the batch-of-one rate, where 64 fell back to ~1x (2 cores, bench forward row)


@dataclass(frozen=True)
class InferenceOptions:
    """How a model runs on its device. Only ``precision`` changes the numbers (it enters the fingerprint).

    Attributes:
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32``, or ``bf16``/``fp16`` autocast.
            Autocast is used on CUDA only; on CPU every model runs in float32 whatever is asked.
        channels_last: NHWC memory format for module and input on CUDA (faster convolutions under autocast).
        compile: ``torch.compile`` the module; batches are zero-padded to ``batch_size`` so one shape compiles.
        batch_size: Frames or 1-s windows per forward pass; None: 64 on CUDA, 8 on CPU (where larger batches
            run slower: ``make bench``'s forward row and the CPU-batch note in the README).
    """

    precision: Precision = "auto"
    channels_last: bool = True
    compile: bool = False
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def resolved(self, device: str) -> "InferenceOptions":
        """These options as they take effect on ``device`` (a resolved torch device string)."""
        cuda = device.startswith("cuda")
        if not cuda and self.precision in ("bf16", "fp16"):
            logger.warning("precision %s needs CUDA; running float32 on %s", self.precision, device)
        precision: Precision = ("bf16" if self.precision == "auto" else self.precision) if cuda else "fp32"
        batch_size = self.batch_size or (CUDA_BATCH_SIZE if cuda else CPU_BATCH_SIZE)
        return replace(self, precision=precision, channels_last=self.channels_last and cuda, batch_size=batch_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InferenceOptions":
        return cls(**data)


def resolve_device(device: str) -> str:
    """Map ``auto|cpu|cuda`` to a torch device string; ``cuda`` without a GPU is an error."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"DEVICE must be one of auto, cpu, cuda; got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("DEVICE=cuda was asked for but torch sees no CUDA device")
    return device


def fingerprint(spec: ExtractorSpec, weights_id: str, precision: Precision = "fp32") -> str:
    """Digest of everything that determines an extractor's numbers: spec (incl. version), weights, precision.

    A float32 run hashes only spec and weights, so fingerprints of float32 stores are those of before
    the precision option existed; a bf16/fp16 run gets its own fingerprint and cannot resume (or mix
    into) a float32 group, nor the reverse.
    """
    content: dict[str, Any] = {"spec": spec.to_dict(), "weights": weights_id}
    if precision != "fp32":
        content["precision"] = precision
    payload = json.dumps(content, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Extractor:
    """A ready-to-run extractor. ``weights_id`` is the checkpoint sha256, ``random-init`` or ``builtin-seeded``.

    ``training_run`` is the run record of weights trained here (None for published or random weights).
    """

    spec: ExtractorSpec
    module: "object"  # torch.nn.Module, typed loosely to keep torch out of import time
    weights_id: str
    device: str
    options: InferenceOptions = field(default_factory=InferenceOptions)  # as resolved for ``device``
    forward: "object" = None  # what runs a batch: ``module``, or its torch.compile wrapper
    training_run: dict | None = None  # run record of weights trained here (extract train-iov)

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.module

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.spec, self.weights_id, self.options.precision)

    def embed(self, batch: "np.ndarray | torch.Tensor") -> np.ndarray:
        """Embed a batch: visual ``(B, H, W, 3)`` uint8 frames (``(B, F, H, W, 3)``: F frames per second, summed,
        see ``VisualInput.frame_offsets_seconds``), or audio ``(B, C, samples)`` float32; a tensor already on the
        model's device (frames decoded on the GPU) is used where it lies.

        Returns:
            ``(B, embedding_dim)`` float32.
        """
        import torch

        n = len(batch)
        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(batch))
        if self.options.compile and n < self.options.batch_size:  # one input shape: no recompiles
            x = torch.cat([x, x.new_zeros((self.options.batch_size - n, *x.shape[1:]))])
        cuda = self.device.startswith("cuda")
        with torch.inference_mode(), self._autocast():
            x = (x.pin_memory() if cuda and x.is_cpu else x).to(self.device, non_blocking=cuda)
            out = embed_inputs(self.spec, self.forward, x, self.options.channels_last)[:n]
        return out.float().cpu().numpy()

    def _autocast(self):
        import torch

        if self.options.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.options.precision == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)


def embed_inputs(spec: ExtractorSpec, forward, x: "torch.Tensor", channels_last: bool = False) -> "torch.Tensor":
    """Model input on its device -> ``(B, D)``: frames normalised by the spec (several frames per second: embedded
    together, summed per second), audio as it is. Differentiable (fine-tuning uses it too)."""
    import torch

    if spec.visual is None:
        return forward(x)
    frames_per_item = x.shape[1] if x.ndim == 5 else 1
    images = normalise_images(x.reshape(-1, *x.shape[-3:]), spec)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    out = forward(images)
    return out.reshape(-1, frames_per_item, out.shape[-1]).sum(dim=1)


def normalise_images(frames_uint8: "torch.Tensor", spec: ExtractorSpec) -> "torch.Tensor":
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float, scaled to [0, 1] and normalised by the spec."""
    import torch

    assert spec.visual is not None
    x = frames_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.visual.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.visual.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def create_extractor(
    name: str,
    *,
    random_init: bool = False,
    device: str = "cpu",
    options: InferenceOptions = InferenceOptions(),
    spec: ExtractorSpec | None = None,
) -> Extractor:
    """Build ``name`` with its pretrained weights (or random ones when ``random_init`` is explicit).

    Args:
        options: Inference options, resolved for the device (see :class:`InferenceOptions`).
        spec: Replaces the registered spec of ``name`` (e.g. a smaller crop to test a large model on CPU).
    """
    import torch

    spec, cls = spec or get_spec(name), get_class(name)
    path = None if spec.weights is None or random_init else resolve_weights(spec)  # fail before building
    torch.manual_seed(0)  # random-init and built-in parameters are reproducible
    module = cls(spec)
    if spec.weights is None:
        weights_id = BUILTIN
    elif path is None:
        logger.warning("%s: RANDOM weights (--random-init); its embeddings carry no pretrained knowledge", name)
        weights_id = RANDOM_INIT
    else:
        module.load_checkpoint(path)
        weights_id = checkpoint_id(path)
    torch_device = resolve_device(device)
    run = training_record(spec) if isinstance(spec.weights, TrainedWeights) and weights_id != RANDOM_INIT else None
    if run is not None and run.get("spec_version", spec.version) != spec.version:
        raise ValueError(f"{name}: its weights were trained for version {run['spec_version']} of the extractor, this is "
                         f"version {spec.version} (its input changed); train it again: {spec.weights.train_command}")
    options = options.resolved(torch_device)
    module.eval().to(torch_device)
    if options.channels_last:
        module.to(memory_format=torch.channels_last)
    forward = torch.compile(module) if options.compile else module
    return Extractor(spec=spec, module=module, weights_id=weights_id, device=torch_device, options=options,
                     forward=forward, training_run=run)
