"""The ``avscene`` front door: a lazily imported API whose docstring examples run (on the debug extractors)."""
from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import avscene

REPO = Path(__file__).resolve().parent.parent
API_MODULES = ("avscene", "extract.extractor", "extract.embed", "extract.runner", "classify.data", "classify.train",
               "vadd.check")


def test_importing_avscene_does_not_import_torch():
    code = "import sys, avscene; print('torch' in sys.modules, sorted(avscene.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split(" ", 1)[0] == "False"
    assert "'embed_file'" in out.stdout and "'Checker'" in out.stdout


def test_api_names_resolve_to_their_modules_and_unknown_names_fail():
    for name, module in avscene._API.items():
        assert getattr(avscene, name) is getattr(importlib.import_module(module), name)
    assert set(avscene._API) <= set(dir(avscene))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        avscene.nothing  # noqa: B018


def test_every_public_function_has_an_example():
    documented = [avscene, *(getattr(avscene, n) for n in avscene._API if n != "Checker"), avscene.Checker.from_heads]
    assert [getattr(o, "__name__", o) for o in documented if "Examples:" not in (o.__doc__ or "")] == []


@pytest.mark.parametrize("name", API_MODULES)
def test_api_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the examples' tempfile.mkdtemp() folders go to pytest's tmp
    monkeypatch.setattr("tempfile.tempdir", None)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_train_head_options_are_fields_of_the_head_or_the_training_config():
    from classify.train import head_and_train_configs

    head, train = head_and_train_configs("es", "paper-code", {"epochs": 2, "dropout": 0.1})
    assert (head.kind, head.dropout, train.epochs, train.optimizer, train.schedule) == ("es", 0.1, 2, "sgd", "cosine")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['epoch'\]"):
        head_and_train_configs("ls", "adam", {"epoch": 2})
    with pytest.raises(ValueError, match="unknown preset"):
        head_and_train_configs("ls", "sgd", {})


def test_extract_takes_built_extractors_on_their_device(tiny_dataset, tmp_path):
    summary = avscene.extract(tiny_dataset, tmp_path / "s.zarr", avscene.create_extractors("debug_audio", "cpu"),
                              progress=False)
    assert summary.complete == {"debug_audio": True} and summary.done["debug_audio"] == 30
    assert avscene.open_store(tmp_path / "s.zarr").load(None).features["debug_audio"].shape[:2] == (30, 3)
