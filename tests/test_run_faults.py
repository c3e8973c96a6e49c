"""Fault probes of run folders and inputs (issue 24, items 3 and 4): a retrain killed (kill -9, SIGTERM, Ctrl-C) or
out of disk leaves the previous run whole; ablation and ``vadd check`` take only finished, unaltered runs; hostile
CSV, JSON and head files give one line naming the file; a manifest of 100,000 missing files answers at once."""
from __future__ import annotations

import hashlib
import json
import os
import random
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avscene.errors import InputFileError, ManifestError, RunFolderError
from avscene.run_folder import COMPLETE_RECORD, finished_problem, require_finished, run_folder

REPO = Path(__file__).resolve().parent.parent
TRAIN = ["--epochs", "1", "--extractors", "debug_visual,debug_audio"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(run: Path) -> list[str]:
    """The hidden partial/previous siblings of the run folder ``run``."""
    return sorted(p.name for p in run.parent.iterdir() if p.name.startswith(f".{run.name}."))


@pytest.fixture(scope="module")
def first_run(tiny_store, tmp_path_factory) -> Path:
    """A finished `classify train` run folder on the tiny store, trained once for the module."""
    from classify.heads import HeadConfig
    from classify.run import run_training
    from classify.train import TrainConfig

    run = tmp_path_factory.mktemp("first") / "ls-10cls"
    run_training(tiny_store, ["debug_visual", "debug_audio"], "", HeadConfig(kind="ls"), TrainConfig(epochs=1), run)
    return run


@pytest.fixture
def trained_run(first_run, tmp_path) -> Path:
    """A copy of :func:`first_run` for one test: the previous run each probe must leave whole."""
    run = tmp_path / "runs" / "ls-10cls"
    shutil.copytree(first_run, run)
    assert finished_problem(run) == ""
    return run


def train_cli(store: str, run: Path, capsys) -> tuple[int, str]:
    """`classify train` in this process: (exit status, stderr)."""
    from classify.cli import main

    status = main(["train", "--store", store, "--out", str(run), *TRAIN])
    return status, capsys.readouterr().err


# ----------------------------------------------------------------------------- the mechanism
def test_a_run_folder_appears_whole_with_its_digests_or_not_at_all(tmp_path):
    run = tmp_path / "run"
    with run_folder(run) as folder:
        (folder / "config.json").write_text("{}")
        (folder / "sub").mkdir()
        (folder / "sub" / "model.pt").write_bytes(b"tensors")
        assert not run.exists()  # nothing at the run's name while it is written
    record = json.loads((run / COMPLETE_RECORD).read_text())
    assert set(record["files"]) == {"config.json", "sub/model.pt"}
    assert record["files"]["sub/model.pt"]["sha256"] == hashlib.sha256(b"tensors").hexdigest()
    before = snapshot(run)
    with pytest.raises(ZeroDivisionError), run_folder(run) as folder:
        (folder / "config.json").write_text('{"new": 1}')
        1 / 0
    assert snapshot(run) == before and siblings(run) == []
    (run / "sub" / "model.pt").write_bytes(b"other tensors")
    assert "model.pt: changed since the run finished" in finished_problem(run)
    (run / COMPLETE_RECORD).unlink()
    with pytest.raises(RunFolderError, match=f"{run}: no complete.json record.*older avscene, or interrupted.*run `redo`"):
        require_finished(run, "redo")


def test_a_folder_of_other_things_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("a user's file")
    with pytest.raises(RunFolderError, match="is not a run folder"), run_folder(tmp_path) as folder:
        (folder / "config.json").write_text("{}")
    assert (tmp_path / "notes.txt").read_text() == "a user's file"


# ----------------------------------------------------------------------------- killed and interrupted retrains
def test_a_retrain_killed_after_config_json_leaves_the_previous_run_intact(trained_run, tiny_store, capsys):
    """The probe: kill -9 once the new config.json is written. The previous run is untouched; the killed run's
    partial sibling is removed by the next run into the folder."""
    before = snapshot(trained_run)
    script = ("import os, signal, sys\nimport classify.run as run\n"
              "def killed(path, trained):\n"
              "    assert (path.parent / 'config.json').is_file()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "run.save_head = killed\nfrom classify.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    out = subprocess.run([sys.executable, "-c", script, "train", "--store", tiny_store, "--out", str(trained_run), *TRAIN],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert snapshot(trained_run) == before
    [partial] = siblings(trained_run)
    assert ".partial-" in partial and (trained_run.parent / partial / "config.json").is_file()
    status, _ = train_cli(tiny_store, trained_run, capsys)
    assert status == 0 and siblings(trained_run) == [] and finished_problem(trained_run) == ""


@pytest.mark.parametrize("sig, target, status", [(signal.SIGTERM, "train_head", 143), (signal.SIGINT, "save_head", 130)])
def test_a_signal_during_training_or_saving_stops_in_one_line_and_keeps_the_previous_run(
        sig, target, status, trained_run, tiny_store, capsys, monkeypatch):
    """SIGTERM while the head trains, Ctrl-C (SIGINT) while it is saved after config.json: one line, exit 128 + signal,
    the previous run as it was and no partial folder left."""
    import classify.run

    real = getattr(classify.run, target)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), sig)  # delivered to this (the main) thread: raised at its next instruction
        return real(*args, **kwargs)

    monkeypatch.setattr(classify.run, target, signalled)
    before = snapshot(trained_run)
    got, err = train_cli(tiny_store, trained_run, capsys)
    assert got == status
    assert err.splitlines()[-1].startswith(f"interrupted ({signal.Signals(sig).name}): stopped; finished work is kept")
    assert "Traceback" not in err
    assert snapshot(trained_run) == before and siblings(trained_run) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # run_cli put the handler back


def test_ctrl_c_during_extraction_exits_130_in_one_line_and_loses_no_finished_block(tiny_dataset, tiny_store, tmp_path,
                                                                                   capsys, monkeypatch):
    """Ctrl-C while the second block is embedded: exit 130, one line; the first block stays done, and a rerun embeds
    only the rest, equal to an uninterrupted extraction."""
    import numpy as np

    import extract.runner
    from extract.cli import main
    from extract.store import DONE, PENDING, EmbeddingStore

    videos = sorted((tiny_dataset / "video").glob("*.mp4"))[:4]
    manifest = tmp_path / "four.csv"
    manifest.write_text("video,audio,label,split\n" + "".join(
        f"{v},{tiny_dataset / 'audio' / (v.stem + '.wav')},{v.stem.split('-')[0]},train\n" for v in videos))
    store = str(tmp_path / "four.zarr")
    run = ["run", "--data", str(manifest), "--store", store, "--extractors", "debug_visual,debug_audio", "--device",
           "cpu", "--clips-per-chunk", "2", "--decode-workers", "1", "--no-progress"]
    real, calls = extract.runner.embed_block, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the second block's first extractor
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(extract.runner, "embed_block", interrupted)
    assert main(run) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("interrupted (SIGINT)") and "Traceback" not in err
    status = {n: EmbeddingStore.open(store).status(n).tolist() for n in ("debug_visual", "debug_audio")}
    assert status == {n: [DONE, DONE, PENDING, PENDING] for n in status}
    monkeypatch.setattr(extract.runner, "embed_block", real)
    assert main(run) == 0
    assert "done now 2, failed now 0, done earlier 2" in capsys.readouterr().out
    for name in ("debug_visual", "debug_audio"):
        got, reference = (EmbeddingStore.open(s).load_split([name], None) for s in (store, tiny_store))
        rows = [list(reference.ids).index(c) for c in got.ids]
        assert len(rows) == 4
        np.testing.assert_array_equal(got.embeddings[name], reference.embeddings[name][rows])


def test_decode_processes_leave_ctrl_c_to_the_run():
    """Ctrl-C on a terminal reaches the whole process group: decode processes (started as ``decode_pool`` starts
    them) ignore it, so no worker prints a traceback; the run answers it in one line and shuts the pool down. The
    run's own handler is back afterwards. (A plain spawn pool here: the runner's initializer would import torch.)"""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from extract.runner import _spawn_ignoring_ctrl_c

    before = signal.getsignal(signal.SIGINT)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        _spawn_ignoring_ctrl_c(pool, 1)
        assert signal.getsignal(signal.SIGINT) is before
        assert pool.submit(signal.getsignal, signal.SIGINT).result(timeout=120) == signal.SIG_IGN


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk-full probe needs root and mount(8) to mount a small tmpfs")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {out.stderr.strip()}")


def test_disk_full_while_saving_keeps_the_previous_run_and_says_so_in_one_line(tiny_store, tmp_path, capsys):
    from classify.cli import main

    disk = tmp_path / "small_disk"
    _mount_tmpfs(disk, "1m")
    try:
        run = disk / "ls-10cls"
        status, _ = train_cli(tiny_store, run, capsys)
        assert status == 0
        before = snapshot(run)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 8192))  # room for config.json, not for model.pt
        status, err = train_cli(tiny_store, run, capsys)
        assert status == 2 and err.count("\n") == 1
        assert err.startswith(f"error: {run}: the run could not be written: No space left on device")
        assert err.strip().endswith("the previous run there is unchanged")
        assert snapshot(run) == before and siblings(run) == []  # the partial run is gone, its space freed
        assert main(["predict", "--model", str(run / "model.pt"), "--out", str(tmp_path / "p.csv")]) == 0
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# ----------------------------------------------------------------------------- readers take only finished runs
def test_ablation_never_reuses_a_row_without_its_complete_record(tiny_store, tmp_path, caplog):
    import logging

    from classify.ablation import _run_or_reuse
    from classify.heads import HeadConfig
    from classify.train import TrainConfig
    from extract.store import EmbeddingStore

    store = EmbeddingStore.open(tiny_store)
    row = tmp_path / "ablation" / "audio-visual-ls-10cls"
    args = (store, tiny_store, row, ["debug_visual", "debug_audio"], store.taxonomy.own_name, HeadConfig(kind="ls"),
            TrainConfig(epochs=1))
    assert _run_or_reuse(*args)["reused"] is False
    assert _run_or_reuse(*args)["reused"] is True
    (row / COMPLETE_RECORD).unlink()  # an older avscene's row, or one whose writing was interrupted
    with caplog.at_level(logging.INFO, logger="classify.ablation"):
        assert _run_or_reuse(*args)["reused"] is False
    assert "no complete.json record" in caplog.text and finished_problem(row) == ""
    metrics = json.loads((row / "metrics.json").read_text())
    (row / "metrics.json").write_text(json.dumps({**metrics, "clip_accuracy": 0.99}))  # a stale or edited figure
    again = _run_or_reuse(*args)
    assert again["reused"] is False and again["clip_accuracy"] == metrics["clip_accuracy"]


def test_vadd_check_refuses_heads_without_a_complete_record(tiny_store, tiny_dataset, tmp_path, capsys):
    from classify.train import TrainConfig
    from vadd.cli import main
    from vadd.evaluate import VaddConfig, evaluate_vadd

    run = tmp_path / "vadd-10cls"
    evaluate_vadd(tiny_store, VaddConfig(validation_fraction=0.4, train=TrainConfig(epochs=1)), run)
    video = sorted((tiny_dataset / "video").glob("*.mp4"))[0]
    check = ["check", str(video), "--audio", str(tiny_dataset / "audio" / f"{video.stem}.wav"), "--heads", str(run),
             "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main(check) == 0
    (run / "vsc.pt").write_bytes((run / "vsc.pt").read_bytes()[:-1] + b"!")
    capsys.readouterr()
    assert main(check) == 2
    assert f"{run / 'vsc.pt'}: changed since the run finished" in capsys.readouterr().err
    (run / COMPLETE_RECORD).unlink()
    assert main(check) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run}: no complete.json record" in err
    assert f"python -m vadd eval --out {run}" in err  # what to do


# ----------------------------------------------------------------------------- hostile files
def test_a_binary_or_oversized_csv_manifest_is_one_line_naming_the_file(tmp_path, capsys):
    from extract.cli import main

    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"video,audio,label,split\n" + bytes(range(128, 256)) * 4)
    huge = tmp_path / "huge.csv"
    huge.write_text("video,audio,label,split\n" + "a.mp4,,park,train\n" + "x" * 200_000 + ".mp4,,park,train\n")
    for manifest, problem in ((binary, f"{binary}: not UTF-8 text (byte 0x80 at offset 24"),
                              (huge, f"{huge}:3: field larger than field limit")):
        status = main(["run", "--data", str(manifest), "--store", str(tmp_path / "never.zarr"), "--extractors",
                       "debug_audio", "--no-progress"])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: {problem}"), err
    assert not (tmp_path / "never.zarr").exists()


def test_binary_protocol_and_grouping_files_name_themselves(tmp_path):
    from extract.taxonomy import read_grouping_file
    from vadd.protocol import read_protocol_csv

    binary = tmp_path / "list.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputFileError, match=f"{binary}: not UTF-8 text"):
        read_protocol_csv(binary)
    with pytest.raises(InputFileError, match=f"{binary}: not UTF-8 text"):
        read_grouping_file(binary, ("a", "b"))


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("kind", ["pickle", "pickle_in_zip", "truncated", "random", "empty", "foreign"])
def test_a_hostile_or_broken_head_file_is_one_line_naming_it(kind, trained_run, tmp_path, capsys):
    import torch

    from classify.cli import main

    model = trained_run / "model.pt"
    good = model.read_bytes()
    content = {
        "pickle": lambda: pickle.dumps(_Payload()),
        "truncated": lambda: good[: len(good) // 2],
        "random": lambda: random.Random(0).randbytes(4096),
        "empty": lambda: b"",
    }
    if kind in content:
        model.write_bytes(content[kind]())
    else:
        torch.save({"x": _Payload()} if kind == "pickle_in_zip" else {"weights": torch.zeros(3)}, model)
    assert main(["predict", "--model", str(model), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {model}: "), err
    assert "weights_only" not in err and "pwned" not in err
    assert not (tmp_path / "p.csv").exists()


def test_a_truncated_run_record_names_its_file(trained_run, tmp_path, capsys):
    from classify.cli import main

    config = trained_run / "config.json"
    config.write_text(config.read_text()[:40])
    assert main(["predict", "--model", str(trained_run / "model.pt"), "--out", str(tmp_path / "p.csv")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {config}: not valid JSON (")


# ----------------------------------------------------------------------------- manifests at scale
def test_a_manifest_of_100k_missing_files_answers_with_the_first_20_and_a_count(tmp_path):
    """The probe took > 13 minutes (a quadratic check) and a 660 KB message. No timing is asserted (benchmarks hold
    speed targets); the elapsed time is printed."""
    from extract.manifest import read_manifest

    manifest = tmp_path / "big.csv"
    manifest.write_text("video,audio,label,split\n" + "".join(f"v{i:06d}.mp4,,park,train\n" for i in range(100_000)))
    started = time.perf_counter()
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest)
    print(f"100k-missing manifest answered in {time.perf_counter() - started:.2f} s")
    lines = str(err.value).splitlines()
    assert lines[0] == f"{manifest}: 100000 media file(s) missing:"
    assert [line.strip() for line in lines[1:21]] == [str(tmp_path / f"v{i:06d}.mp4") for i in range(20)]
    assert lines[21:] == ["  ... and 99980 more"]


# ----------------------------------------------------------------------------- weights list
def test_weights_list_checks_digests_and_shows_a_tampered_file_as_damaged(tmp_path, capsys):
    from tests.conftest import require_shared

    from extract import weights
    from extract.cli import main
    from extract.registry import get_spec

    spec, unverifiable = get_spec("efficientat_mn04.audioset"), get_spec("openl3_linear_env_512")
    installed = weights.expected_path(spec)
    installed.parent.mkdir(parents=True)
    shutil.copy(require_shared("weights", "mn04_as_mAP_432.pt"), installed)
    weights.expected_path(unverifiable).write_bytes(b"any bytes: no digest is published for OpenL3")
    assert weights.cache_state(spec) == ("present", "")
    assert weights.cache_state(unverifiable)[0] == "present, not verified"
    data = bytearray(installed.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped, same size (the mtime changes, so the cached digest is redone)
    installed.write_bytes(bytes(data))
    assert main(["weights", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("efficientat_mn04.audioset"))
    assert " DAMAGED " in line and " present" not in line
    state, why = weights.cache_state(spec)
    assert state == "DAMAGED" and "does not match" in why


def test_random_bytes_as_a_head_file_are_refused_whatever_they_hold(tmp_path):
    """torch's weights-only reader fails on random bytes with many exception types (KeyError, IndexError, ...):
    every one becomes the one-line InputFileError."""
    from avscene.errors import InputFileError
    from classify.persist import load_tensors

    path = tmp_path / "model.pt"
    for seed in range(30):
        path.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(InputFileError, match=str(path)):
            load_tensors(path)
