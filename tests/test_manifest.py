"""Dataset manifests: the real TAU metadata (12,291 clips, real folds) and generic CSV manifests."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from avscene.errors import ManifestError
from extract.manifest import read_csv_manifest, read_manifest, read_tau
from extract.taxonomy import TAU_SCENES
from tests.conftest import require_shared

META_FILES = ("meta.csv", "evaluation_setup/fold1_train.csv", "evaluation_setup/fold1_test.csv",
              "evaluation_setup/fold1_evaluate.csv")


def _copy_meta(tmp_path: Path, crlf_bom: bool = False) -> Path:
    """The shared TAU metadata under a fresh root (optionally rewritten with CRLF line ends and a BOM)."""
    source = require_shared("tau", "meta")
    root = tmp_path / "tau"
    for name in META_FILES:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (source / name).read_text(encoding="utf-8-sig")
        if crlf_bom:
            target.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
        else:
            target.write_text(text)
    return root


@pytest.mark.parametrize("crlf_bom", [False, True])
def test_real_tau_metadata_gives_the_real_folds(tmp_path, crlf_bom):
    manifest = read_tau(_copy_meta(tmp_path, crlf_bom), require=())
    splits = Counter(c.split for c in manifest.clips)
    assert len(manifest.clips) == 12_291
    assert splits == {"train": 8_646, "test": 3_645}
    assert manifest.classes == TAU_SCENES
    assert {c.label for c in manifest.clips} == set(TAU_SCENES)
    train_locations = {c.clip_id.rsplit("-", 1)[0] for c in manifest.by_split("train")}
    test_locations = {c.clip_id.rsplit("-", 1)[0] for c in manifest.by_split("test")}
    assert not train_locations & test_locations  # TAU's folds share no recording location
    clip = next(c for c in manifest.clips if c.clip_id == "airport-lisbon-1175-44106")
    assert clip.split == "test" and clip.label == "airport"  # fold1_test has no labels: taken from meta.csv
    assert clip.video_path.name == "airport-lisbon-1175-44106.mp4" and clip.audio_path.parent.name == "audio"


def test_real_wavs_are_found_and_the_missing_files_are_listed_and_counted(tmp_path):
    root = _copy_meta(tmp_path)
    (root / "audio").symlink_to(require_shared("tau", "audio"), target_is_directory=True)
    real_ids = {p.stem for p in (root / "audio").glob("*.wav")}
    manifest = read_tau(root, require=("audio",), subset=real_ids)
    assert len(manifest.clips) == 42
    assert Counter(c.split for c in manifest.clips) == {"train": 32, "test": 10}
    with pytest.raises(ManifestError) as caught:
        read_tau(root, require=("audio", "video"), subset=real_ids)
    message = str(caught.value)
    assert "42 media file(s) missing" in message and "airport-helsinki-3-117.mp4" in message
    listed = [c for c in manifest.clips if f"{c.clip_id}.mp4" in message]
    assert len(listed) == 20 and message.endswith("... and 22 more")  # the first 20 listed, all 42 counted


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_tau_refuses_unknown_labels_duplicates_and_escaping_paths(tmp_path):
    root = _copy_meta(tmp_path)
    meta = root / "meta.csv"
    lines = meta.read_text().splitlines()
    header, first = lines[0], lines[1]
    cases = {
        "unknown scene label 'beach'": first.replace("\tairport\t", "\tbeach\t"),
        "duplicate clip id": lines[2],
        "escapes the data root": first.replace("audio/", "../audio/").replace("video/", "../video/"),
    }
    for expected, row in cases.items():
        _write(meta, "\n".join([header, *lines[1:], row]) + "\n")
        with pytest.raises(ManifestError, match=expected) as caught:
            read_tau(root, require=())
        assert f"meta.csv:{len(lines) + 1}" in str(caught.value)


def test_csv_manifest_paths_labels_and_own_audio_track(tmp_path):
    for name in ("a.mp4", "b.mp4", "b.wav"):
        _write(tmp_path / "media" / name, "x")
    manifest_path = _write(tmp_path / "list.csv",
                           "video,audio,label,split\r\nmedia/a.mp4,,park,train\r\nmedia/b.mp4,media/b.wav,bus,test\r\n")
    manifest = read_manifest(manifest_path)
    a, b = manifest.clips
    assert (a.clip_id, a.audio_path, a.split) == ("a", None, "train")  # None = the video's own audio track
    assert b.audio_path == tmp_path / "media" / "b.wav"
    assert manifest.classes == ("bus", "park")
    with pytest.raises(ManifestError, match="unknown label 'bus'"):
        read_csv_manifest(manifest_path, classes=("park",))


@pytest.mark.parametrize("rows, expected", [
    ("media/a.mp4,,park,train\nmedia/a.mp4,,park,test\n", r"list.csv:3: duplicate clip id a \(file stem\), first on line 2"),
    ("/nowhere/a.mp4,,park,train\n", "1 media file.*\n  /nowhere/a.mp4"),  # absolute paths are allowed, but must exist
    ("media/missing.mp4,,park,train\n", "1 media file"),
    ("media/a.mp4,,park\n", "3 fields"),
    (",,park,train\n", "needs a video or an audio"),
])
def test_csv_manifest_rejects_bad_rows(tmp_path, rows, expected):
    _write(tmp_path / "media" / "a.mp4", "x")
    with pytest.raises(ManifestError, match=expected):
        read_csv_manifest(_write(tmp_path / "list.csv", "video,audio,label,split\n" + rows))


def test_neither_tau_folder_nor_csv_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="expected a TAU-layout folder"):
        read_manifest(tmp_path)
