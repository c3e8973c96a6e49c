"""The one decode-and-embed path: frame choices, streaming = whole-clip decoding, one decoding per clip, workers."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from extract import decode_plan
from extract.audio_io import load_audio
from extract.decode_plan import DecodePlan, decode_clip, frame_fingerprint
from extract.embed import embed_decoded, embed_waveform, iter_embeddings
from extract.extractor import create_extractor
from extract.manifest import Clip, read_manifest
from extract.registry import get_spec
from extract.runner import RunConfig, run_extraction
from extract.store import EmbeddingStore, StoreError
from tests.timestamp_media import read_timestamp, write_timestamp_video

DEBUG_EXTRACTORS = ("debug_visual", "debug_audio")


def _sized(name: str, px: int):
    """``name``'s spec with frames of ``px`` pixels (big enough for the timestamp code to be read back)."""
    spec = get_spec(name)
    return replace(spec, visual=replace(spec.visual, resize_shorter_px=px, crop_px=px))


@pytest.fixture(scope="module")
def ts30(tmp_path_factory) -> Path:
    """3 s of 30-fps timestamp video (frame i shows i) with a tone."""
    return write_timestamp_video(tmp_path_factory.mktemp("ts") / "ts30.mp4", 90, 30, 320, 240, 30, with_audio=True).path


@pytest.mark.parametrize("frame_choice, expected", [
    ("middle", [15, 45, 75]),  # shown at k + 0.5 s
    ("released-code", [i for i in range(90) if (i + 1) % 30 == 0]),  # the released script's 1-based counter % 30 == 0
])
def test_frame_choice_picks_the_frames_it_names(ts30, frame_choice, expected):
    spec = _sized("debug_visual", 240)
    decoded = decode_clip(Clip("ts", "", "train", ts30, None), 3, DecodePlan.for_specs([spec], frame_choice))
    assert [read_timestamp(f) for f in decoded.input_for(spec)] == expected


def test_one_decoding_pass_per_clip_for_every_size_offset_and_audio_rate(ts30, monkeypatch):
    frame_passes, audio_passes = [], []
    real_frames, real_audio = decode_plan.iter_frames, decode_plan.AudioSeconds
    monkeypatch.setattr(decode_plan, "iter_frames", lambda *a, **k: frame_passes.append(a[0]) or real_frames(*a, **k))
    monkeypatch.setattr(decode_plan, "AudioSeconds", lambda *a, **k: audio_passes.append(a[0]) or real_audio(*a, **k))
    big, small = _sized("debug_visual", 240), _sized("debug_visual", 64)
    two_frames = replace(big, visual=replace(big.visual, frame_offsets_seconds=(0.0, 14 / 30)))
    audio = get_spec("debug_audio")
    audio_48k = replace(audio, audio=replace(audio.audio, sample_rate_hz=48_000, channels="stereo"))
    decoded = decode_clip(Clip("ts", "", "train", ts30, None), 3,
                          DecodePlan.for_specs([big, small, two_frames, audio, audio_48k]))
    assert len(frame_passes) == 1 and len(audio_passes) == 1
    assert decoded.input_for(small).shape == (3, 64, 64, 3)
    assert [[read_timestamp(f) for f in second] for second in decoded.input_for(two_frames)] == [[0, 14], [30, 44], [60, 74]]
    assert decoded.input_for(audio).shape == (3, 1, 16_000) and decoded.input_for(audio_48k).shape == (3, 2, 48_000)


def test_streamed_chunks_equal_the_whole_clip_with_frame_offsets(ts30):
    """vadd check streams chunks of seconds; the runner decodes a clip at once: same numbers (several offsets too)."""
    spec = get_spec("debug_visual")
    two_frames = create_extractor("debug_visual", spec=replace(spec, visual=replace(
        spec.visual, frame_offsets_seconds=(0.0, 14 / 30))), device="cpu")
    extractors = [two_frames, create_extractor("debug_audio", device="cpu")]
    clip = Clip("ts", "", "", ts30, None)
    chunks = list(iter_embeddings(clip, extractors, chunk_seconds=2, frame_choice="released-code"))
    assert [c.start_s for c in chunks] == [0, 2] and [c.n_seconds for c in chunks] == [2, 1]
    np.testing.assert_array_equal(np.concatenate([c.timestamps_s for c in chunks]), [0.5, 1.5, 2.5])
    whole = embed_decoded(decode_clip(clip, 3, DecodePlan.for_specs([e.spec for e in extractors], "released-code")),
                          extractors)
    for name, x in whole.embeddings.items():  # audio: resampled in other pieces, equal to float32 rounding
        np.testing.assert_allclose(np.concatenate([c.embeddings[name] for c in chunks]), x, rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def test_store_holds_what_the_streaming_path_gives(tiny_dataset, tiny_store):
    store = EmbeddingStore.open(tiny_store)
    extractors = [create_extractor(n, device="cpu") for n in DEBUG_EXTRACTORS]
    for clip in read_manifest(tiny_dataset).clips[:2]:
        row = list(store.clips.ids).index(clip.clip_id)
        streamed = list(iter_embeddings(clip, extractors, chunk_seconds=1))
        for name in DEBUG_EXTRACTORS:
            stored = store.root[f"extractors/{name}/original/embeddings"][row].astype(np.float32)
            np.testing.assert_allclose(np.concatenate([c.embeddings[name] for c in streamed]), stored,
                                       rtol=2e-3, atol=2e-3, err_msg=f"{clip.clip_id} {name}")


def test_waveform_entry_point_equals_the_file_path(tiny_dataset):
    clip = read_manifest(tiny_dataset).clips[0]
    extractor = create_extractor("debug_audio", device="cpu")
    waveform, rate_hz = load_audio(clip.audio_path)
    from_array = embed_waveform(waveform, rate_hz, [extractor])
    from_file = list(iter_embeddings(replace(clip, video_path=None), [extractor], chunk_seconds=30))
    assert len(from_file) == 1 and from_array.n_seconds == 3
    np.testing.assert_allclose(from_array.embeddings["debug_audio"], from_file[0].embeddings["debug_audio"], atol=1e-5)
    with pytest.raises(ValueError, match="less than one second"):
        embed_waveform(waveform[:, :100], rate_hz, [extractor])


def test_frame_choice_is_recorded_in_the_store_and_the_visual_fingerprint(tiny_dataset, tiny_store, tmp_path):
    location = str(tmp_path / "released.zarr")
    run_extraction(RunConfig(data=tiny_dataset, store=location, extractors=DEBUG_EXTRACTORS, device="cpu",
                             clips_per_chunk=8, progress=False, frame_choice="released-code", decode_backend="thread",
                             decode_workers=2))
    released, middle = EmbeddingStore.open(location), EmbeddingStore.open(tiny_store)
    assert (released.frame_choice, middle.frame_choice) == ("released-code", "middle")
    assert released.attrs["frame_offset_seconds"] == pytest.approx(29 / 30)
    visual, audio = (lambda s: s.group_attrs("debug_visual")["fingerprint"]), (lambda s: s.group_attrs("debug_audio")["fingerprint"])
    assert visual(released) != visual(middle) and audio(released) == audio(middle)
    assert visual(released) == frame_fingerprint(visual(middle), get_spec("debug_visual"), "released-code")
    embeddings = lambda s, n: s.root[f"extractors/{n}/original/embeddings"][:]  # noqa: E731
    assert not np.array_equal(embeddings(released, "debug_visual"), embeddings(middle, "debug_visual"))
    np.testing.assert_array_equal(embeddings(released, "debug_audio"), embeddings(middle, "debug_audio"))
    with pytest.raises(StoreError, match="--frame-choice released-code"):
        run_extraction(RunConfig(data=tiny_dataset, store=location, extractors=DEBUG_EXTRACTORS, device="cpu",
                                 progress=False, frame_choice="middle"))


def test_thread_and_process_workers_write_the_same_store(tiny_dataset, tiny_store, tmp_path):
    """tiny_store was written by the default (one decode thread per core); two processes must agree exactly."""
    location = str(tmp_path / "processes.zarr")
    run_extraction(RunConfig(data=tiny_dataset, store=location, extractors=DEBUG_EXTRACTORS, device="cpu",
                             clips_per_chunk=8, progress=False, decode_backend="process", decode_workers=2))
    a, b = EmbeddingStore.open(location), EmbeddingStore.open(tiny_store)
    for name in DEBUG_EXTRACTORS:
        for array in ("embeddings", "valid", "status"):
            np.testing.assert_array_equal(a.root[f"extractors/{name}/original/{array}"][:],
                                          b.root[f"extractors/{name}/original/{array}"][:], err_msg=f"{name}/{array}")
    with pytest.raises(ValueError, match="decode backend"):
        run_extraction(RunConfig(data=tiny_dataset, store=str(tmp_path / "x.zarr"), extractors=DEBUG_EXTRACTORS,
                                 device="cpu", progress=False, decode_backend="fibres"))


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the worker processes")
def test_decode_processes_end_when_their_run_is_killed(tiny_dataset, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    import uuid

    marker = f"AVSCENE_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    run = subprocess.Popen([sys.executable, "-m", "extract", "run", "--data", str(tiny_dataset), "--store",
                            str(tmp_path / "k.zarr"), "--extractors", "debug_visual,debug_audio", "--device", "cpu",
                            "--clips-per-chunk", "2", "--no-progress", "--decode-workers", "2",
                            "--decode-backend", "process"],
                           cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_processes_with(marker)) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the run and its two decode processes
    assert run.poll() is None and len(_processes_with(marker)) >= 3, "the run ended before its workers were seen"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 20
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []
