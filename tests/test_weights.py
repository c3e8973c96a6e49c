"""Weights verification: full sha256, a publisher's sha256 prefix, or md5; the stamp cache; installs."""
from __future__ import annotations

import hashlib

import pytest

from extract.registry import AudioInput, ExtractorSpec, WeightsSource
from extract.weights import WeightsChecksumError, fetch, import_dir, resolve_weights, weights_id

PAYLOAD = b"not really a checkpoint, but bytes with known digests"
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def _spec(sha256: str = "", md5: str = "") -> ExtractorSpec:
    source = WeightsSource("toy.pth", "https://example.org/toy.pth", sha256, "test", "MIT", md5=md5)
    return ExtractorSpec("toy.test", "audio", 4, "1", "toy", source, audio=AudioInput(16000, "mono"))


@pytest.mark.parametrize("sha256, md5", [(SHA256, ""), (SHA256[:8], ""), ("", MD5), (SHA256[:8], MD5)])
def test_published_digests_accept_the_right_file(tmp_path, monkeypatch, sha256, md5):
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "toy.pth").write_bytes(PAYLOAD)
    spec = _spec(sha256, md5)
    [installed] = import_dir(tmp_path / "src", [spec])
    assert resolve_weights(spec) == installed
    assert weights_id(installed) == SHA256  # the store records the full digest even when a prefix was published


@pytest.mark.parametrize("sha256, md5", [("0" * 64, ""), ("deadbeef", ""), ("", "0" * 32), (SHA256, "0" * 32)])
def test_wrong_digests_are_refused(tmp_path, monkeypatch, sha256, md5):
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "toy.pth").write_bytes(PAYLOAD)
    with pytest.raises(WeightsChecksumError, match="toy.pth"):
        import_dir(tmp_path / "src", [_spec(sha256, md5)])
    assert not (tmp_path / "cache" / "toy.pth").exists()


def test_a_file_changed_in_the_cache_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "toy.pth").write_bytes(PAYLOAD)
    spec = _spec(SHA256)
    [installed] = import_dir(tmp_path / "src", [spec])
    installed.write_bytes(PAYLOAD + b"!")
    with pytest.raises(WeightsChecksumError, match="delete it"):
        resolve_weights(spec)


def test_a_source_without_any_digest_is_refused():
    with pytest.raises(ValueError, match="sha256"):
        _spec()


@pytest.mark.parametrize("sha256, md5, accepted", [(SHA256[:8], "", True), ("", MD5, True), ("deadbeef", "", False),
                                                   (SHA256, "0" * 32, False)])
def test_fetch_downloads_checks_and_installs_or_leaves_nothing(tmp_path, monkeypatch, sha256, md5, accepted):
    """torch.hub's download (here from a file:// URL) checks the sha256 prefix; md5 is checked before installing."""
    from dataclasses import replace

    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "cache"))
    (tmp_path / "toy.pth").write_bytes(PAYLOAD)
    spec = _spec(sha256, md5)
    spec = replace(spec, weights=replace(spec.weights, url=(tmp_path / "toy.pth").as_uri()))
    if accepted:
        assert fetch(spec, progress=False).read_bytes() == PAYLOAD
        assert resolve_weights(spec) == tmp_path / "cache" / "toy.pth"
    else:
        with pytest.raises(WeightsChecksumError, match="toy.pth"):
            fetch(spec, progress=False)
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []
