"""Where avscene keeps its data (store, weights, runs): a checkout's ``cache/``, else a per-user cache folder.

In a source checkout (``pyproject.toml`` and ``cache/README.md`` beside the packages) data lives in its ``cache/``
folder, as the Makefile expects. An installed avscene never writes into site-packages: it uses ``$AVSCENE_HOME``,
else the platform's user cache (``$XDG_CACHE_HOME/avscene`` or ``~/.cache/avscene`` on Linux,
``~/Library/Caches/avscene`` on macOS, ``%LOCALAPPDATA%\\avscene`` on Windows). ``$AVSCENE_HOME`` wins in a
checkout too. Nothing here touches the file system at import time; every function resolves paths when called.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout's root, when avscene runs from one


def in_checkout() -> bool:
    """True when avscene runs from a source checkout rather than an installed copy."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "cache" / "README.md").is_file()


def user_cache_dir() -> Path:
    """The platform's per-user cache folder for avscene (used outside a checkout)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "avscene"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "avscene"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avscene"


def cache_dir() -> Path:
    """The data folder (store, weights, runs, heads registry); never a package, never site-packages."""
    if os.environ.get("AVSCENE_HOME"):
        return Path(os.environ["AVSCENE_HOME"])
    return REPO_ROOT / "cache" if in_checkout() else user_cache_dir()


def default_store() -> str:
    """The command lines' store when none is given: ``<cache>/embeddings.zarr``."""
    return str(cache_dir() / "embeddings.zarr")


def runs_dir() -> Path:
    """Where the command lines put run folders (training, ablations, VADD evaluation) by default: ``<cache>/runs``."""
    return cache_dir() / "runs"


def weights_dir() -> Path:
    """Weights cache: ``$AVSCENE_WEIGHTS`` or ``<cache>/weights``."""
    return Path(os.environ.get("AVSCENE_WEIGHTS", cache_dir() / "weights"))


def shared_dir() -> Path:
    """Real shared assets: ``$AVSCENE_SHARED``, else ``../shared`` beside a checkout (``<cache>/shared`` outside one)."""
    if os.environ.get("AVSCENE_SHARED"):
        return Path(os.environ["AVSCENE_SHARED"])
    return REPO_ROOT.parent / "shared" if in_checkout() else cache_dir() / "shared"
