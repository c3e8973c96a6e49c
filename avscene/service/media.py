"""What a request may name: a path confined to the media roots, and media that the decode path can read."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from avscene.errors import AvsceneError, MediaError


class RequestRefused(AvsceneError):
    """A request the service refuses: the HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_media_path(raw: str, roots: list[Path]) -> Path:
    """The file ``raw`` names, relative to the first media root (or absolute inside one), once every symlink is
    resolved; refused when it has a ``..`` part, leaves the roots (also through a symlink) or is no regular file."""
    if not roots:
        raise RequestRefused(400, "path: this server has no media root (avscene serve --media-root DIR): upload the "
                                  "file instead")
    if not raw or "\x00" in raw:
        raise RequestRefused(400, "path: empty or holds a NUL character")
    if ".." in PurePosixPath(raw).parts or ".." in Path(raw).parts:
        raise RequestRefused(400, f"path {raw!r}: '..' is not allowed (paths are confined to the media roots)")
    resolved_roots = [root.resolve() for root in roots]
    candidate = Path(raw) if Path(raw).is_absolute() else roots[0] / raw
    if not _inside(candidate, [*roots, *resolved_roots]):
        raise RequestRefused(403, f"path {raw!r} is outside the media roots")
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise RequestRefused(404, f"path {raw!r}: no such file under the media roots") from None
    except (OSError, RuntimeError) as err:  # a symlink loop, a permission problem
        raise RequestRefused(400, f"path {raw!r}: cannot be resolved ({err})") from None
    if not _inside(resolved, resolved_roots):
        raise RequestRefused(403, f"path {raw!r} resolves outside the media roots (a symlink leaving the root)")
    if not resolved.is_file():
        raise RequestRefused(400, f"path {raw!r}: not a regular file")
    return resolved


def probe_media(path: Path, extractors: list[str], shown_as: str) -> int:
    """Whole seconds that ``path`` holds of both modalities the heads' extractors read, probed through the decode
    path (the content, never the file name); :class:`RequestRefused` (422) naming ``shown_as`` otherwise."""
    from extract.decode_plan import DecodePlan, common_timeline
    from extract.manifest import Clip
    from extract.registry import get_spec

    plan = DecodePlan.for_specs([get_spec(name) for name in extractors])
    try:
        timeline = common_timeline(Clip(shown_as, "", "", path, None), plan)
    except MediaError as err:
        raise RequestRefused(422, str(err).replace(str(path), shown_as)) from None
    return timeline.n_seconds
