"""Pretrained weights: where they live, how they are checked, and the only networked code.

Resolution order: the weights cache (``$AVSCENE_WEIGHTS`` or ``cache/weights``) holds files under the
spec's ``filename``; ``fetch`` downloads from the official URL and ``import_dir`` copies from a local
folder, both verifying sha256 before a file is put in place. Loading never downloads.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.request
from pathlib import Path

from extract.paths import weights_dir
from extract.registry import ExtractorSpec

logger = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
BUILTIN = "builtin-seeded"  # debug extractors: deterministic parameters, no file


class MissingWeightsError(FileNotFoundError):
    """The checkpoint of an extractor is not in the weights cache."""


class WeightsChecksumError(ValueError):
    """A checkpoint file does not have the published sha256."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_path(spec: ExtractorSpec) -> Path:
    if spec.weights is None:
        raise ValueError(f"{spec.name} has no weights file")
    return weights_dir() / spec.weights.filename


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verified(path: Path, sha256: str) -> bool:
    """True when ``path`` has digest ``sha256``; a stamp file avoids re-hashing unchanged large files."""
    stat = path.stat()
    stamp = f"{sha256} {stat.st_size} {stat.st_mtime_ns}"
    stamp_file = _stamp_path(path)
    if stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        return True
    if sha256_file(path) != sha256:
        return False
    stamp_file.write_text(stamp + "\n")
    return True


def is_present(spec: ExtractorSpec) -> bool:
    return spec.weights is not None and expected_path(spec).exists()


def resolve_weights(spec: ExtractorSpec) -> Path:
    """The verified checkpoint path of ``spec``, or a :class:`MissingWeightsError` that says how to get it."""
    path = expected_path(spec)
    assert spec.weights is not None
    if not path.exists():
        raise MissingWeightsError(
            f"weights for {spec.name!r} are missing: expected file {spec.weights.filename} at {path} "
            f"(official URL: {spec.weights.url}). Fix with one of:\n"
            f"  python -m extract weights fetch {spec.name}    # downloads from the official URL (needs internet)\n"
            f"  python -m extract weights import DIR    # copies {spec.weights.filename} from a local folder, checking sha256\n"
            "or pass --random-init to run the architecture with random weights (recorded as such in the store)."
        )
    if not _verified(path, spec.weights.sha256):
        raise WeightsChecksumError(
            f"{path} does not have the sha256 {spec.weights.sha256} of {spec.name!r} "
            f"({spec.weights.sha256_origin}); delete it and fetch or import it again"
        )
    return path


def _install(source: Path, spec: ExtractorSpec) -> Path:
    """Verify ``source`` against the spec and move/copy it into the cache atomically."""
    assert spec.weights is not None
    digest = sha256_file(source)
    if digest != spec.weights.sha256:
        raise WeightsChecksumError(
            f"{source}: sha256 {digest} differs from {spec.weights.sha256} expected for {spec.name!r}"
        )
    target = expected_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
    _verified(target, digest)
    return target


def fetch(spec: ExtractorSpec) -> Path:
    """Download ``spec``'s checkpoint from its official URL (the project's only network access)."""
    if spec.weights is None:
        raise ValueError(f"{spec.name} has no weights to fetch")
    target = expected_path(spec)
    if target.exists() and _verified(target, spec.weights.sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    download = target.with_name(target.name + ".download")
    logger.info("downloading %s from %s", spec.weights.filename, spec.weights.url)
    with urllib.request.urlopen(spec.weights.url) as response, open(download, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)
    try:
        return _install(download, spec)
    finally:
        download.unlink(missing_ok=True)


def import_dir(folder: Path, specs: list[ExtractorSpec]) -> list[Path]:
    """Copy every checkpoint of ``specs`` found in ``folder`` into the cache, checking sha256."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of weights files")
    installed = []
    for spec in specs:
        if spec.weights is None:
            continue
        source = folder / spec.weights.filename
        if not source.exists():
            continue
        target = expected_path(spec)
        if target.exists() and _verified(target, spec.weights.sha256):
            installed.append(target)
            continue
        installed.append(_install(source, spec))
        logger.info("imported %s for %s", source, spec.name)
    return installed
