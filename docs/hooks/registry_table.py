"""mkdocs hook: the extractors page's table, generated from ``extract.registry`` at build time.

A page holding the line ``<!-- extractor-registry-table -->`` gets it replaced by one row per registered
extractor (sorted by name): modality, embedding size, model input, where the weights come from, license and
spec version. Offline and deterministic: it reads the specs only; nothing is built, loaded or downloaded.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]  # the checkout whose registry the site documents
MARKER = "<!-- extractor-registry-table -->"
HEADER = ("| name | modality | dim | input | weights | license | version |\n"
          "|---|---|---|---|---|---|---|")


def _input(spec: Any) -> str:
    if spec.visual is not None:
        v = spec.visual
        resize = f"squash to {v.resize_shorter_px}x{v.resize_shorter_px}" if v.resize == "square" else str(v.resize_shorter_px)
        text = f"{resize} → {v.crop_px}, {v.interpolation}"
        if v.frame_offsets_seconds:
            text += ", frames at " + " + ".join(f"{o:.3g}" for o in v.frame_offsets_seconds) + " s of each second"
        return text
    a = spec.audio
    text = f"{a.sample_rate_hz / 1000:g} kHz {a.channels}, 1 s"
    return text + (f" + {a.context_seconds:g} s context each side" if a.context_seconds else "")


def _weights(spec: Any) -> tuple[str, str]:
    from extract.registry import TrainedWeights

    w = spec.weights
    if w is None:
        return "seeded built-in parameters", "-"
    if isinstance(w, TrainedWeights):
        return f"trained here: `{w.train_command}`", w.license
    return f"`{w.filename}`", w.license


def registry_table() -> str:
    """The markdown table of every registered extractor."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # the `mkdocs` script's path does not start at the checkout
    from extract.registry import get_spec, list_extractors

    rows = [HEADER]
    for name in list_extractors():
        spec = get_spec(name)
        weights, license_ = _weights(spec)
        cells = (f"`{name}`", spec.modality, str(spec.embedding_dim), _input(spec), weights, license_, spec.version)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs event: fill the marker, leave every other page as it is."""
    return markdown.replace(MARKER, registry_table()) if MARKER in markdown else markdown
