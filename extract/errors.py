"""Errors that name the file and the problem, so batch jobs can record them per item."""
from __future__ import annotations

from pathlib import Path


class MediaError(ValueError):
    """A media file is missing, unreadable, too short or lacks a needed stream.

    Messages start with the file path so per-clip error tables stay readable.
    """


class ManifestError(ValueError):
    """A dataset manifest is malformed, references missing files or escapes its data root."""


def require_file(path: Path) -> None:
    """Raise a MediaError unless ``path`` is a regular file (a folder with the file's name is not)."""
    if path.is_file():
        return
    if path.exists():
        raise MediaError(f"{path}: not a regular file (a folder or device has this name)")
    raise MediaError(f"{path}: file not found")
