"""The HEAR 2021 API over every registered audio extractor, so hear-eval-kit can score avscene's audio models.

One module with a factory: ``load_model`` builds the extractor named by its ``extractor`` option through the
project's extractor API (:func:`extract.extractor.create_extractor`: the weights cache, digests checked; random
weights only with ``random_init=True``)::

    python -m heareval.embeddings.runner extract.hear --model-options '{"extractor": "efficientat_mn04.audioset"}'

hear-eval-kit names the embeddings folder after the module and its options, so each extractor gets its own.
``--model FILE`` (``model_file_path``) is the extractor's weights file under its official name; it is imported into
the weights cache with its digest checked, as ``python -m extract weights import`` does.

Timestamps: the extractor embeds windows of its own input length (1 s plus its context, e.g. OpenL3's 0.5 s each
side) *centred* on ``0, hop, 2 hop, ...`` up to the end of the sound, zero beyond the sound's ends; a timestamp is
its window's centre in milliseconds. The scene embedding is the mean of the timestamp embeddings.

``load_model(FILE)`` alone (hearvalidator's call, which passes no options) takes the extractor whose weights file
has FILE's name, when exactly one does. Both embedding functions run without autograd (hearvalidator calls them
outside ``torch.no_grad``; with gradients OpenL3 needs over 20 GiB for two 2-s sounds).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _hide_triton_after_tensorflow() -> None:
    """hear-eval-kit and hearvalidator import TensorFlow before this module; the extractors then import torchvision,
    whose ``torch._dynamo`` imports triton when it is installed, and loading libtriton (3.8) after TensorFlow (2.20)
    kills the process (SIGSEGV in ``triton/knobs.py``). HEAR inference never compiles, so torch is told there is no
    triton, only in a process where TensorFlow came first."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # ``import triton`` raises ImportError: torch's has_triton_package() -> False
        logger.info("TensorFlow was imported first: triton is hidden from torch in this process")


_hide_triton_after_tensorflow()

from extract.extractor import create_extractor, embed_inputs
from extract.registry import ExtractorSpec, get_spec

DEFAULT_HOP_MS = 250.0
WINDOWS_PER_FORWARD = 32


class HearModel(nn.Module):
    """An audio extractor with HEAR's attributes; ``.to(device)`` moves it (hear-eval-kit does)."""

    def __init__(self, spec: ExtractorSpec, embedder: nn.Module, hop_ms: float = DEFAULT_HOP_MS):
        super().__init__()
        if spec.audio is None:
            raise ValueError(f"{spec.name} is a {spec.modality} extractor; the HEAR API takes audio extractors only")
        self.spec = spec
        self.embedder = embedder
        self.sample_rate = spec.audio.sample_rate_hz
        self.scene_embedding_size = spec.embedding_dim
        self.timestamp_embedding_size = spec.embedding_dim
        self.hop_samples = round(hop_ms * self.sample_rate / 1000)
        if self.hop_samples < 1:
            raise ValueError(f"hop_ms must give at least one sample at {self.sample_rate} Hz, got {hop_ms}")

    def windows(self, audio: torch.Tensor) -> torch.Tensor:
        """``(n_sounds, n_samples)`` -> the model inputs ``(n_sounds, n_timestamps, window_samples)``, centred on
        every ``hop_samples``-th sample from 0 to ``n_samples``, zero-padded beyond the sound."""
        if audio.ndim != 2:
            raise ValueError(f"audio must be (n_sounds, n_samples) mono at {self.sample_rate} Hz, got {tuple(audio.shape)}")
        size = self.spec.audio.window_samples  # even: the rate and both context sides are whole samples
        padded = nn.functional.pad(audio.float(), (size // 2, size // 2))
        return padded.unfold(-1, size, self.hop_samples)

    def timestamps_ms(self, n_sounds: int, n_timestamps: int, device: torch.device) -> torch.Tensor:
        """``(n_sounds, n_timestamps)`` float32: the window centres in milliseconds."""
        centres = torch.arange(n_timestamps, dtype=torch.float64) * (self.hop_samples * 1000.0 / self.sample_rate)
        return centres.float().expand(n_sounds, n_timestamps).to(device)


def load_model(model_file_path: str = "", *, extractor: str = "", random_init: bool = False,
               hop_ms: float = DEFAULT_HOP_MS) -> HearModel:
    """HEAR's ``load_model``: the registered audio extractor ``extractor`` on CPU, in eval mode.

    Args:
        model_file_path: '' = the weights cache; else the extractor's weights file under its official name,
            imported into the cache after its digest is checked.
        extractor: A registered audio extractor (``python -m extract weights list``).
        random_init: Random weights instead of pretrained ones (never taken silently).
        hop_ms: Milliseconds between timestamps.
    """
    if not extractor and model_file_path:
        extractor = _extractor_for_file(Path(model_file_path).name)
    if not extractor:
        raise ValueError("name the extractor: load_model(extractor=NAME), or hear-eval-kit's "
                         "--model-options '{\"extractor\": NAME}'")
    spec = get_spec(extractor)
    if model_file_path:
        _import_weights(Path(model_file_path), spec)
    built = create_extractor(extractor, random_init=random_init, device="cpu")
    return HearModel(built.spec, built.module, hop_ms)


def _extractor_for_file(filename: str) -> str:
    """The one registered audio extractor whose weights file is named ``filename``; '' when none is.

    Raises:
        ValueError: several extractors read that file (e.g. an OpenL3 file serves its 512- and 6144-d variants).
    """
    from extract.registry import list_extractors

    names = [n for n in list_extractors()
             if (s := get_spec(n)).audio is not None and s.weights is not None and s.weights.filename == filename]
    if len(names) > 1:
        raise ValueError(f"{filename} is the weights file of {', '.join(names)}; name one: load_model(FILE, "
                         "extractor=NAME), or hear-eval-kit's --model-options '{\"extractor\": NAME}'")
    return names[0] if names else ""


def _import_weights(path: Path, spec: ExtractorSpec) -> None:
    from extract.weights import import_dir

    if spec.weights is None:
        raise ValueError(f"{spec.name} has built-in parameters; it takes no weights file (got {path})")
    if path.name != spec.weights.filename or not path.is_file():
        raise FileNotFoundError(f"{path}: {spec.name} reads its weights file {spec.weights.filename!r}; "
                                "pass that file under that name")
    import_dir(path.parent, [spec])


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, n_samples)`` mono audio at ``model.sample_rate`` -> embeddings ``(n_sounds, n_timestamps,
    timestamp_embedding_size)`` float32 and timestamps ``(n_sounds, n_timestamps)`` in milliseconds."""
    windows = model.windows(audio)
    n_sounds, n_timestamps, size = windows.shape
    channels = 1 if model.spec.audio.channels == "mono" else 2  # a stereo model hears the mono sound on both
    flat = windows.reshape(-1, 1, size).expand(-1, channels, size)
    parts = [embed_inputs(model.spec, model.embedder, flat[i : i + WINDOWS_PER_FORWARD].contiguous())
             for i in range(0, len(flat), WINDOWS_PER_FORWARD)]
    embeddings = torch.cat(parts).float().reshape(n_sounds, n_timestamps, -1)
    return embeddings, model.timestamps_ms(n_sounds, n_timestamps, audio.device)


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``(n_sounds, n_samples)`` -> ``(n_sounds, scene_embedding_size)``: the mean of the timestamp embeddings."""
    embeddings, _ = get_timestamp_embeddings(audio, model)
    return embeddings.mean(dim=1)
