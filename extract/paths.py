"""Where avscene keeps its data: repo-relative defaults overridable by environment variables.

Nothing here touches the file system at import time; every function resolves paths when called.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STORE = "cache/embeddings.zarr"  # the CLIs' store, relative to the working directory


def cache_dir() -> Path:
    """The data folder (store, weights, runs); never a package."""
    return REPO_ROOT / "cache"


def weights_dir() -> Path:
    """Weights cache: ``$AVSCENE_WEIGHTS`` or ``cache/weights``."""
    return Path(os.environ.get("AVSCENE_WEIGHTS", cache_dir() / "weights"))


def shared_dir() -> Path:
    """Real shared assets: ``$AVSCENE_SHARED`` or ``../shared`` beside the repo."""
    return Path(os.environ.get("AVSCENE_SHARED", REPO_ROOT.parent / "shared"))
