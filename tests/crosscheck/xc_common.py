"""Shared parts of the cross-check suite: real inputs, install-and-load through our loader, error report.

Errors: ``max_abs = max |ours - reference|`` and ``max_rel = max_abs / max |reference|`` (relative to the
largest reference magnitude of that output; an element-wise ratio is meaningless where the reference is ~0).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.extractor import Extractor, create_extractor
from extract.registry import ExtractorSpec, get_spec
from extract.weights import expected_path, file_digests
from tests.conftest import require_shared

REPORT_PATH = Path("cache/crosscheck/report.json")
TAU_STEMS = ("bus-prague-1102-40498.wav", "street_traffic-london-271-8266.wav")


@dataclass(frozen=True)
class Comparison:
    model: str
    output: str
    reference: str
    inputs: str
    max_abs: float
    max_rel: float
    tolerance_rel: float


RESULTS: list[Comparison] = []


def compare(model: str, output: str, reference: str, inputs: str, ours, theirs, tolerance_rel: float = 1e-4) -> Comparison:
    """Record the errors of ``ours`` against ``theirs`` and assert ``max_rel <= tolerance_rel``."""
    ours_np = np.asarray(ours.detach().cpu() if isinstance(ours, torch.Tensor) else ours, dtype=np.float64)
    theirs_np = np.asarray(theirs.detach().cpu() if isinstance(theirs, torch.Tensor) else theirs, dtype=np.float64)
    assert ours_np.shape == theirs_np.shape, f"{model} {output}: shape {ours_np.shape} vs reference {theirs_np.shape}"
    max_abs = float(np.abs(ours_np - theirs_np).max())
    max_rel = max_abs / max(float(np.abs(theirs_np).max()), 1e-30)
    result = Comparison(model, output, reference, inputs, max_abs, max_rel, tolerance_rel)
    RESULTS.append(result)
    assert max_rel <= tolerance_rel, f"{model} {output}: max rel error {max_rel:.3g} > {tolerance_rel:g} ({result})"
    return result


def report_markdown() -> str:
    lines = ["| model | output | reference | input | max abs | max rel | tolerance |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.output} | {r.reference} | {r.inputs} | {r.max_abs:.2e} | {r.max_rel:.2e} | "
              f"{r.tolerance_rel:g} |" for r in RESULTS]
    return "\n".join(lines)


def write_report() -> Path:
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(json.dumps([dataclasses.asdict(r) for r in RESULTS], indent=1))
    REPORT_PATH.with_suffix(".md").write_text(report_markdown() + "\n")
    return REPORT_PATH.with_suffix(".md")


def version(distribution: str) -> str:
    from importlib.metadata import version as dist_version

    return f"{distribution} {dist_version(distribution)}"


def real_audio_windows(spec: ExtractorSpec, stems: tuple[str, ...] = TAU_STEMS, seconds: int = 1) -> tuple[np.ndarray, str]:
    """The first ``seconds`` model windows of each TAU recording, then of ``chirp_mono.wav``, decoded and cut by
    the project's own audio path for ``spec``: ``((n, C, window), description)``."""
    from extract.audio_io import audio_windows, load_audio

    assert spec.audio is not None
    paths = [require_shared("tau", "audio", s) for s in stems] + [require_shared("media", "chirp_mono.wav")]
    windows = []
    for path in paths:
        waveform, rate_hz = load_audio(path)
        windows.append(audio_windows(waveform, rate_hz, seconds, spec.audio.sample_rate_hz, spec.audio.channels,
                                     spec.audio.context_samples))
    return np.concatenate(windows), f"2 TAU wavs + chirp_mono.wav, first {seconds} s each at {spec.audio.sample_rate_hz // 1000} kHz"


def load_through_our_loader(name: str, write_official_file, spec: ExtractorSpec | None = None) -> Extractor:
    """Write the reference's weights as the official file into the weights cache (``write_official_file(path)``),
    then build ``name`` the way a downloaded file is used: ``create_extractor`` -> digest check -> ``load_checkpoint``.

    The spec's published digest is replaced by the written file's sha256 (random weights cannot have the
    published one); the digest check itself runs.
    """
    spec = spec or get_spec(name)
    path = expected_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_official_file(path)
    weights = dataclasses.replace(spec.weights, sha256=file_digests(path)["sha256"], md5="")
    return create_extractor(name, spec=dataclasses.replace(spec, weights=weights))


def import_package_module(package: str, module: str) -> types.ModuleType:
    """``package.module`` of an installed distribution without running ``package/__init__.py`` (the PANNs
    packages' ``__init__`` imports ``config.py``, which runs ``wget``): a bare package object stands in for it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        pytest.skip(f"reference package {package!r} not installed (pip install -e '.[crosscheck]')")
    alias = f"_crosscheck_{package}"
    if alias not in sys.modules:
        stub = types.ModuleType(alias)
        stub.__path__ = list(found.submodule_search_locations)
        sys.modules[alias] = stub
    return importlib.import_module(f"{alias}.{module}")


def randomise_norms_(module: torch.nn.Module, seed: int) -> None:
    """Give every BatchNorm random affine parameters and running statistics (a fresh net has 1, 0, 0, 1, which
    would hide a mix-up of them)."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            n = layer.num_features
            with torch.no_grad():
                layer.weight.copy_(0.5 + torch.rand(n, generator=generator))
                layer.bias.copy_(0.2 * torch.randn(n, generator=generator))
                layer.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                layer.running_var.copy_(0.5 + torch.rand(n, generator=generator))
