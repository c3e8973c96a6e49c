"""avscene: audio-visual scene classification and audio-visual discrepancy detection (VADD) in video.

The stages live in their own packages (``extract``: media -> per-second embeddings in a Zarr store; ``classify``:
fusion heads on the store; ``vadd``: discrepancy detection); this package is their front door and holds the
plumbing they share (errors, paths, progress bars, the command-line entry). The API below is imported lazily:
``import avscene`` stays cheap (no torch) until one of its names is used.

- :func:`create_extractors` ``(names, device)``: extractors by registry name (``python -m extract weights list``).
- :func:`embed_file` ``(video, extractors, audio=None)``: per-second embeddings of one file, with timestamps.
- :func:`extract` ``(data, store, extractors, **options)``: a dataset's clips into a store (resumable).
- :func:`open_store` ``(path)``: a store's splits, ``.load(split, extractors, classes=...)``.
- :func:`train_head` ``(clips, head="ls", preset="adam", **overrides)``: a scene head on loaded clips.
- :class:`Checker` (``.from_heads(visual, audio, threshold)``, ``.from_run(dir)``, ``.check(video)``): does a
  video's picture match its sound?

Examples:
    Embed a dataset (here a small synthetic one, with the tiny debug extractors), train a visual and an audio
    scene head, and check a video against its soundtrack:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import avscene
    >>> from avscene.demo.synthetic import make_demo_dataset
    >>> folder = Path(tempfile.mkdtemp())
    >>> data = make_demo_dataset(folder / "data", clips_per_scene=1, seconds=2, width=32, height=24)
    >>> summary = avscene.extract(data, folder / "emb.zarr", "debug_visual,debug_audio", device="cpu", progress=False)
    >>> reader = avscene.open_store(folder / "emb.zarr")
    >>> visual = avscene.train_head(reader.load("train", "debug_visual"), epochs=3, progress=False)
    >>> audio = avscene.train_head(reader.load("train", "debug_audio"), epochs=3, progress=False)
    >>> checker = avscene.Checker.from_heads(visual, audio, threshold=0.5, window_seconds=2, device="cpu")
    >>> video = sorted((data / "video").glob("*.mp4"))[0]
    >>> sound = data / "audio" / f"{video.stem}.wav"
    >>> embedded = avscene.embed_file(video, avscene.create_extractors("debug_visual,debug_audio", "cpu"), audio=sound)
    >>> embedded.timestamps_s.tolist()
    [0.5, 1.5]
    >>> report = checker.check(video, audio=sound).to_dict()
    >>> report["n_seconds"], report["verdict"] in ("consistent", "manipulated")
    (2, True)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {  # name -> the module that defines it
    "create_extractors": "extract.extractor",
    "embed_file": "extract.embed",
    "extract": "extract.runner",
    "open_store": "classify.data",
    "train_head": "classify.train",
    "Checker": "vadd.check",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    """Import an API name from its module on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
