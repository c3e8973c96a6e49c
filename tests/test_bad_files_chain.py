"""One bad file never blocks the results: a TAU-layout folder built like real data (an unreadable wav in the test
split, a truncated mp4 in the train split, one 7-s clip among 2-s clips) goes through extract (killed with kill -9
once, then rerun) -> train-ls -> ablation -> vadd-eval (generated, then a protocol CSV naming the bad clip) ->
predict. Every step finishes, names the excluded clips, and loses no other clip."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from classify.cli import main as classify_main
from extract.manifest import read_tau
from extract.store import DONE, FAILED, EmbeddingStore
from extract.taxonomy import tau_recording_location
from test_faults import counts, extract_cmd
from test_pipeline import DEBUG_EXTRACTORS, REPO, finished_clips
from vadd.cli import main as vadd_main
from vadd.protocol import ProtocolItem, read_protocol_csv, validation_rows, write_protocol_csv

N_CLIPS = 70  # 10 scenes x 7 clips: 50 train, 20 test
VALIDATION_FRACTION = 0.4


def _row_of(data: Path, split_file: str, index: int) -> str:
    """The clip id of row ``index`` of ``evaluation_setup/<split_file>``."""
    lines = (data / "evaluation_setup" / split_file).read_text().splitlines()[1:]
    return Path(lines[index].split("\t")[0]).stem


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> dict:
    """The dataset, with ``bad_wav`` (test), ``truncated`` (train) and ``long`` (7 s, train) clip ids."""
    from avscene.demo.synthetic import make_demo_dataset, write_video, write_wav
    from tests.timestamp_media import timestamp_frame

    data = make_demo_dataset(tmp_path_factory.mktemp("bad") / "data", clips_per_scene=7, seconds=2, seed=3,
                             width=64, height=48)
    train = [c for c in read_tau(data, require=()).clips if c.split == "train"]
    held = validation_rows([c.clip_id for c in train], [c.label for c in train], VALIDATION_FRACTION,
                           location_of=tau_recording_location)
    truncated = train[int(np.flatnonzero(held)[0])].clip_id  # one the VADD threshold's hold-out would draw
    bad_wav = _row_of(data, "fold1_test.csv", 0)
    long = next(c.clip_id for c in train[7:] if c.clip_id != truncated)
    (data / "audio" / f"{bad_wav}.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(500))
    video = data / "video" / f"{truncated}.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    write_video(data / "video" / f"{long}.mp4", lambda i: timestamp_frame(i, 64, 48), 70, 10, 64, 48, gop=10)
    write_wav(data / "audio" / f"{long}.wav", np.random.default_rng(0).uniform(-0.3, 0.3, (2, 7 * 48_000)).astype(
        np.float32), 48_000)
    return {"data": data, "bad_wav": bad_wav, "truncated": truncated, "long": long}


@pytest.fixture(scope="module")
def chain(bad_data, tmp_path_factory) -> dict:
    """Extraction killed with SIGKILL once the store holds 20 finished clips, then rerun twice."""
    store = str(tmp_path_factory.mktemp("store") / "emb.zarr")
    cmd = extract_cmd(bad_data["data"], store)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while finished_clips(store, "debug_audio") < 20 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    before = {n: finished_clips(store, n) for n in DEBUG_EXTRACTORS}
    assert min(before.values()) < N_CLIPS, "killed after the run had ended"
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    return {**bad_data, "store": store, "before": before, "resumed": resumed, "rerun": rerun,
            "runs": tmp_path_factory.mktemp("runs")}


def test_extraction_killed_then_rerun_records_both_bad_files_and_reports_them(chain):
    resumed, rerun = chain["resumed"], chain["rerun"]
    assert resumed.returncode == 0 and rerun.returncode == 0, resumed.stderr + rerun.stderr
    for name in DEBUG_EXTRACTORS:  # the resumed run did what the killed one had not, nothing twice
        assert counts([resumed.stdout], "skipped")[name] == chain["before"][name]
        assert counts([resumed.stdout], "done")[name] + counts([resumed.stdout], "failed")[name] \
            == N_CLIPS - chain["before"][name]
    # the second rerun does nothing, and still says which clips failed and where to look
    assert re.search(r"^debug_audio: done now 0, failed now 0, done earlier 69, failed earlier 1,", rerun.stdout, re.M)
    assert re.search(r"^debug_visual: done now 0, failed now 0, done earlier 69, failed earlier 1,", rerun.stdout, re.M)
    assert f"`make info STORE={chain['store']}`" in rerun.stdout and "--retry-failed" in rerun.stdout
    s = EmbeddingStore.open(chain["store"])
    row = {c: i for i, c in enumerate(s.clips.ids)}
    assert s.status("debug_audio")[row[chain["bad_wav"]]] == FAILED
    assert s.status("debug_visual")[row[chain["truncated"]]] == FAILED
    assert s.root["extractors/debug_visual/original/valid"][row[chain["long"]]].sum() == 7 == s.seconds_max
    info = subprocess.run([*extract_cmd(chain["data"], chain["store"])[:3], "info", "--store", chain["store"]],
                          cwd=REPO, capture_output=True, text=True)
    assert chain["bad_wav"] in info.stdout and chain["truncated"] in info.stdout


def _excluded(metrics: dict) -> set[str]:
    return {e["clip"] for e in metrics["excluded_clips"]}


def test_train_ls_excludes_exactly_the_two_bad_clips(chain):
    out = chain["runs"] / "ls-10cls"
    assert classify_main(["train", "--store", chain["store"], "--classes", "10", "--head", "ls", "--epochs", "2",
                          "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert _excluded(metrics) == {chain["bad_wav"], chain["truncated"]}
    reasons = {e["clip"]: e["reason"] for e in metrics["excluded_clips"]}
    assert reasons[chain["truncated"]].startswith("debug_visual: failed [") and chain["truncated"] in reasons[chain["truncated"]]
    assert metrics["n_train_clips"] == 49 and metrics["n_clips"] == 19  # every other clip, the 7-s one included
    assert chain["bad_wav"] not in (out / "predictions.csv").read_text()


def test_ablation_finishes_and_every_row_names_the_excluded_clips(chain):
    out = chain["runs"] / "ablation"
    assert classify_main(["ablation", "--store", chain["store"], "--epochs", "1", "--out", str(out)]) == 0
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/metrics.json"))]
    assert rows and all(_excluded(m) for m in rows)
    for m in rows:  # a row reads only the extractors of its inputs: a clip is excluded only when one of them failed
        assert _excluded(m) <= {chain["bad_wav"], chain["truncated"]}
        assert m["n_train_clips"] + m["n_clips"] + len(m["excluded_clips"]) == N_CLIPS


def test_vadd_generated_then_a_protocol_naming_the_bad_clip(chain, capsys):
    generated = chain["runs"] / "vadd-generated"
    args = ["eval", "--store", chain["store"], "--classes", "10", "--epochs", "3", "--validation-fraction",
            str(VALIDATION_FRACTION)]
    assert vadd_main([*args, "--out", str(generated)]) == 0
    metrics = json.loads((generated / "metrics.json").read_text())
    assert _excluded(metrics) == {chain["bad_wav"], chain["truncated"]}
    items = read_protocol_csv(generated / "protocol.csv")
    named = {i.video_clip for i in items} | {i.audio_clip for i in items}
    s = EmbeddingStore.open(chain["store"])
    usable_test = set(s.clips.ids[s.clips.splits == "test"]) - {chain["bad_wav"]}
    assert named <= usable_test and len(named) >= 16  # pairing across classes may leave a few clips over
    assert metrics["protocol_items"] == f"{len(items)} of {len(items)} items"

    # an explicit protocol: the generated items plus three naming the bad test clip
    label = dict(zip(s.clips.ids, s.clips.labels))
    bad = chain["bad_wav"]
    other = next(c for c in sorted(named) if label[c] != label[bad])
    b, o = label[bad], label[other]  # 10 classes: the scenes themselves
    explicit = items + [ProtocolItem(bad, bad, b, b, False), ProtocolItem(bad, other, b, o, True),
                        ProtocolItem(other, bad, o, b, True)]
    protocol = chain["runs"] / "protocol.csv"
    write_protocol_csv(protocol, explicit)
    fixed = chain["runs"] / "vadd-fixed"
    capsys.readouterr()
    assert vadd_main([*args, "--protocol", str(protocol), "--out", str(fixed)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((fixed / "metrics.json").read_text())
    assert metrics["protocol_items"] == f"{len(items)} of {len(items) + 3} items" and metrics["n_items"] == len(items)
    assert f"({len(items)} of {len(items) + 3} items, 2 clips excluded)" in printed
    assert [d["item"] for d in metrics["dropped_items"]] == [len(items) + 1, len(items) + 2, len(items) + 3]
    assert all(any(r.startswith(f"{bad}: debug_audio: failed") for r in d["reasons"]) for d in metrics["dropped_items"])
    assert "2 clips excluded" in (fixed / "metrics.md").read_text()
    # --strict: all items or nothing
    assert vadd_main([*args, "--protocol", str(protocol), "--strict", "--out", str(chain["runs"] / "strict")]) == 2
    assert not (chain["runs"] / "strict" / "metrics.json").exists()
    # a protocol clip absent from the store (another dataset) still stops with the clear message
    write_protocol_csv(protocol, items + [ProtocolItem("elsewhere-x-1-1", "elsewhere-x-1-1", b, b, False)])
    assert vadd_main([*args, "--protocol", str(protocol), "--out", str(chain["runs"] / "absent")]) == 2


def test_predict_scores_every_usable_test_clip_and_names_the_excluded_one(chain, capsys):
    run = chain["runs"] / "ls-predict"
    assert classify_main(["train", "--store", chain["store"], "--classes", "10", "--head", "ls", "--epochs", "1",
                          "--out", str(run)]) == 0
    out = chain["runs"] / "predictions.tsv"
    capsys.readouterr()
    assert classify_main(["predict", "--model", str(run / "model.pt"), "--store", chain["store"], "--split", "test",
                          "--out", str(out)]) == 0
    assert f"19 clips scored, 1 excluded: {chain['bad_wav']}" in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 19 and not any(chain["bad_wav"] in r["filename"] for r in rows)


def test_retry_failed_redoes_only_the_failed_clips_and_exit_status_is_documented(chain, tmp_path):
    import shutil

    store = str(tmp_path / "retry.zarr")
    shutil.copytree(chain["store"], store)
    data = chain["data"]
    before = EmbeddingStore.open(store)
    embeddings = {n: before.root[f"extractors/{n}/original/embeddings"][:] for n in DEBUG_EXTRACTORS}
    failing = subprocess.run(extract_cmd(data, store, "--fail-on-error"), cwd=REPO, capture_output=True, text=True)
    assert failing.returncode == 1 and "--fail-on-error: 2 clip failure(s) recorded" in failing.stderr

    # the user fixes the wav (a copy of a good one); the truncated video stays broken
    good = next(p for p in sorted((data / "audio").glob("*.wav")) if p.stem != chain["bad_wav"])
    backup = (data / "audio" / f"{chain['bad_wav']}.wav").read_bytes()
    shutil.copy(good, data / "audio" / f"{chain['bad_wav']}.wav")
    try:
        retried = subprocess.run(extract_cmd(data, store, "--retry-failed"), cwd=REPO, capture_output=True, text=True)
    finally:
        (data / "audio" / f"{chain['bad_wav']}.wav").write_bytes(backup)
    assert retried.returncode == 0, retried.stderr
    assert re.search(r"^debug_audio: done now 1, failed now 0, done earlier 69, failed earlier 0 \(1 earlier failures "
                     r"retried\)", retried.stdout, re.M), retried.stdout
    assert re.search(r"^debug_visual: done now 0, failed now 1, done earlier 69, failed earlier 0 \(1 earlier failures "
                     r"retried\)", retried.stdout, re.M), retried.stdout
    after = EmbeddingStore.open(store)
    row = {c: i for i, c in enumerate(after.clips.ids)}
    assert after.status("debug_audio")[row[chain["bad_wav"]]] == DONE
    assert after.errors("debug_audio") == [] and [c for c, _, _ in after.errors("debug_visual")] == [chain["truncated"]]
    assert after.group_attrs("debug_audio")["timing"]["clips_failed"] == 0  # recounted after the retry
    for name in DEBUG_EXTRACTORS:  # nothing else was rewritten
        now = after.root[f"extractors/{name}/original/embeddings"][:]
        others = np.ones(len(now), bool)
        others[row[chain["bad_wav"]]] = False
        np.testing.assert_array_equal(now[others], embeddings[name][others], err_msg=name)


def test_finetune_leaves_out_the_bad_train_clip_from_the_store_or_when_its_decoding_fails(chain, tmp_path):
    from classify.finetune import FinetuneConfig, run_finetune

    cfg = FinetuneConfig(visual="debug_visual", audio="debug_audio", random_init=True, augment=False, batch_size=16,
                         clips_per_chunk=16, device="cpu")
    by_store = run_finetune(chain["data"], tmp_path / "store", cfg, store_location=chain["store"])
    by_decoding = run_finetune(chain["data"], tmp_path / "decode", cfg)
    for metrics, reason in ((by_store, "debug_visual: failed [decode]"), (by_decoding, "visual: failed [decode]")):
        assert [(e["clip"], e["reason"].startswith(reason)) for e in metrics["excluded_clips"]] \
            == [(chain["truncated"], True)]
    assert by_store["seconds_seen"] == by_decoding["seconds_seen"] == 48 * 2 + 7  # every other train clip
