"""Errors that name the file and the problem, so batch jobs can record them per item."""
from __future__ import annotations


class MediaError(ValueError):
    """A media file is missing, unreadable, too short or lacks a needed stream.

    Messages start with the file path so per-clip error tables stay readable.
    """


class ManifestError(ValueError):
    """A dataset manifest is malformed, references missing files or escapes its data root."""
