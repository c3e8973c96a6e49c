"""Decoding as a player shows it, per container: frame clocks and audio seconds on one presentation timeline, stream
start times, encoder priming, display rotation, coverage said out loud. Media are written here with PyAV (no ffmpeg
program needed): a frame clock (frame i shows i) with a soundtrack whose second k is a tone of its own frequency."""
from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avscene.demo.synthetic import write_video
from avscene.paths import shared_dir
from extract.decode_plan import DecodePlan, decode_clip, probe_timeline
from extract.embed import iter_embeddings
from extract.extractor import create_extractor
from extract.manifest import Clip
from extract.registry import get_spec
from extract.video_io import probe_video, read_frames
from tests.timestamp_media import read_timestamp, timestamp_frame

FPS, SECONDS, RATE_HZ = 10, 3, 48_000
WIDTH, HEIGHT = 160, 120
EXPECTED_FRAMES = {"middle": [5, 15, 25], "released-code": [9, 19, 29]}  # shown at k + 0.5 s and k + 29/30 s
CONTAINERS = ("mp4", "mov", "mkv", "webm", "ts", "avi")


def tone_code(n_seconds: int, rate_hz: int = RATE_HZ) -> np.ndarray:
    """``(1, n_seconds * rate_hz)``: second k is a sine of ``tone_hz(k)``."""
    t_s = np.arange(n_seconds * rate_hz) / rate_hz
    return (0.3 * np.sin(2 * np.pi * tone_hz(np.floor(t_s)) * t_s))[None].astype(np.float32)


def tone_hz(second):
    return 400 + 300 * second


def tone_fraction(window: np.ndarray, rate_hz: int, freq_hz: float) -> float:
    """Share of a window's energy at ``freq_hz`` (1 for a pure tone of that frequency filling the window)."""
    t_s = np.arange(window.shape[-1]) / rate_hz
    projection = np.abs(np.sum(window * np.exp(-2j * np.pi * freq_hz * t_s))) ** 2
    return float(2 * projection / (window.shape[-1] * np.sum(window ** 2)))


def remux(src: Path, dst: Path, offset_s: float = 0.0, audio_offset_s: float = 0.0,
          rotation_deg: int | None = None, audio_from: Path | None = None) -> Path:
    """Copy ``src``'s packets into ``dst`` (its container from the suffix), every timestamp moved by ``offset_s`` and
    the audio's by ``audio_offset_s`` more; ``rotation_deg`` writes a display matrix; ``audio_from`` takes the audio
    packets from that file instead."""
    sources = [av.open(str(src))] + ([av.open(str(audio_from))] if audio_from else [])
    with av.open(str(dst), "w") as out:
        streams = {}
        for container in sources:
            for stream in container.streams:
                if audio_from and (stream.type == "audio") == (container is sources[0]):
                    continue
                streams[(id(container), stream.index)] = out.add_stream_from_template(stream)
                if rotation_deg is not None and stream.type == "video":
                    streams[(id(container), stream.index)].set_display_rotation(rotation_deg)
        for container in sources:
            for packet in container.demux():
                key = (id(container), packet.stream.index)
                if packet.dts is None or key not in streams:
                    continue
                shift = round((offset_s + (audio_offset_s if packet.stream.type == "audio" else 0)) / packet.time_base)
                packet.pts, packet.dts = (packet.pts + shift if packet.pts is not None else None), packet.dts + shift
                packet.stream = streams[key]
                out.mux(packet)
    for container in sources:
        container.close()
    return dst


def clock_video(path: Path, **codecs) -> Path:
    write_video(path, lambda i: timestamp_frame(i, WIDTH, HEIGHT), FPS * SECONDS, FPS, WIDTH, HEIGHT, gop=5,
                audio=tone_code(SECONDS), audio_rate_hz=RATE_HZ, **codecs)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """The frame clock in every container: mp4 written, mov/mkv/ts remuxed from it (same packets), webm (VP9 + Opus)
    and avi (MPEG-4 + PCM) written."""
    folder = tmp_path_factory.mktemp("containers")
    mp4 = clock_video(folder / "clock.mp4")
    files = {"mp4": mp4, "webm": clock_video(folder / "clock.webm", video_codec="libvpx-vp9", audio_codec="libopus"),
             "avi": clock_video(folder / "clock.avi", video_codec="mpeg4", audio_codec="pcm_s16le")}
    for ext in ("mov", "mkv", "ts"):
        files[ext] = remux(mp4, folder / f"clock.{ext}")
    return files


def _sized(name: str, px: int):
    spec = get_spec(name)
    return replace(spec, visual=replace(spec.visual, resize_shorter_px=px, crop_px=px))


@pytest.mark.parametrize("frame_choice", sorted(EXPECTED_FRAMES))
@pytest.mark.parametrize("ext", CONTAINERS)
def test_frame_clock_and_audio_seconds_per_container(media, ext, frame_choice):
    visual, audio = _sized("debug_visual", 112), get_spec("debug_audio")
    clip = Clip(ext, "", "", media[ext], None)
    timeline, errors = probe_timeline(clip)
    assert errors == "" and timeline.n_seconds == SECONDS and timeline.covered.all()
    assert abs(timeline.video_offset_s - timeline.audio_offset_s) < 0.01  # the streams start together once priming is dropped
    decoded = decode_clip(clip, SECONDS, DecodePlan.for_specs([visual, audio], frame_choice))
    assert decoded.errors == {}
    assert [read_timestamp(f) for f in decoded.input_for(visual)] == EXPECTED_FRAMES[frame_choice]
    windows = decoded.input_for(audio)[:, 0]  # (seconds, 16000) at 16 kHz
    fractions = [tone_fraction(w, 16_000, tone_hz(k)) for k, w in enumerate(windows)]
    # a tone change misplaced by 21 ms (one AAC frame of priming) leaves ~0.96; the codec's onset costs second 0 ~0.02
    assert min(fractions[1:]) > 0.995 and fractions[0] > 0.95, fractions


@pytest.mark.parametrize("ext", CONTAINERS)
def test_seeking_and_sequential_decoding_agree(media, ext):
    times_s = [k + 0.5 for k in range(SECONDS)]
    for strategy in ("seek", "sequential"):
        frames = read_frames(media[ext], times_s, [(112, 112)], strategy=strategy)[(112, 112)]
        assert [read_timestamp(f) for f in frames] == EXPECTED_FRAMES["middle"], strategy


def test_transport_streams_are_measured_from_timestamps_and_not_seeked(media):
    info = probe_video(media["ts"])
    assert not info.seekable
    timeline, _ = probe_timeline(Clip("ts", "", "", media["ts"], None))
    assert abs(timeline.audio.n_frames / RATE_HZ - SECONDS) < 0.03  # its header alone underestimates it


def test_a_seek_that_lands_late_makes_the_rest_sequential(tmp_path, monkeypatch, caplog):
    """Seeks are verified by the decoded time: forced on a transport stream with B-frames (camera-like), where a seek
    by byte position lands a keyframe late, the frames are still the right ones."""
    from extract import video_io

    camera = tmp_path / "camera.mp4"
    write_video(camera, lambda i: timestamp_frame(i, WIDTH, HEIGHT), FPS * SECONDS, FPS, WIDTH, HEIGHT, gop=FPS,
                x264_preset="veryfast")
    ts = remux(camera, tmp_path / "camera.ts")
    real_probe = video_io.probe_video
    monkeypatch.setattr(video_io, "probe_video", lambda path: replace(real_probe(path), seekable=True))
    with caplog.at_level("INFO", logger="extract.video_io"):
        frames = read_frames(ts, [k + 0.5 for k in range(SECONDS)], [(112, 112)], strategy="seek")[(112, 112)]
    assert [read_timestamp(f) for f in frames] == EXPECTED_FRAMES["middle"]
    assert "decoded the frame at 2.00 s; decoding the rest sequentially" in caplog.text


def _embeddings(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    extractors = [create_extractor("debug_visual", device="cpu"), create_extractor("debug_audio", device="cpu")]
    chunks = list(iter_embeddings(Clip(path.stem, "", "", path, None), extractors, chunk_seconds=2))
    names = [e.spec.name for e in extractors]
    return ({n: np.concatenate([c.embeddings[n] for c in chunks]) for n in names},
            {n: np.concatenate([c.valid[n] for c in chunks]) for n in names})


@pytest.mark.parametrize("ext, offset_s", [("ts", 0.0), ("mkv", 0.0), ("mov", 0.0), ("ts", 10.0), ("mkv", 10.0),
                                           ("mp4", 10.0), ("mov", 10.0)])
def test_remux_with_an_offset_gives_the_plain_mp4s_embeddings(media, tmp_path, ext, offset_s):
    """Same packets, other container and clock origin (``ffmpeg -c copy -output_ts_offset``): same embeddings."""
    plain, _ = _embeddings(media["mp4"])
    moved, valid = _embeddings(remux(media["mp4"], tmp_path / f"moved.{ext}", offset_s))
    for name, x in plain.items():
        np.testing.assert_allclose(moved[name], x, atol=1e-5, rtol=0, err_msg=name)
        assert valid[name].all()


@pytest.fixture(scope="module")
def late_audio(tmp_path_factory) -> tuple[Path, Path]:
    """``(twin, late)``: the twin's soundtrack is 1 s of silence then the tone code; the late file holds the tone code
    alone, starting 1 s after the picture. Lossless audio (ALAC), the same video packets."""
    folder = tmp_path_factory.mktemp("late")
    sound = np.concatenate([np.zeros((1, RATE_HZ), np.float32), tone_code(SECONDS - 1)], axis=1)
    twin = folder / "twin.mp4"
    write_video(twin, lambda i: timestamp_frame(i, WIDTH, HEIGHT), FPS * SECONDS, FPS, WIDTH, HEIGHT, gop=5,
                audio=sound, audio_rate_hz=RATE_HZ, audio_codec="alac")
    tone = folder / "tone.mp4"
    write_video(tone, lambda i: timestamp_frame(i, WIDTH, HEIGHT), FPS, FPS, WIDTH, HEIGHT, gop=5,
                audio=tone_code(SECONDS - 1), audio_rate_hz=RATE_HZ, audio_codec="alac")
    return twin, remux(twin, folder / "late.mp4", audio_offset_s=1.0, audio_from=tone)


def test_late_audio_is_placed_at_its_start_time(late_audio):
    twin, late = late_audio
    timeline, _ = probe_timeline(Clip("late", "", "", late, None))
    assert abs(timeline.audio_offset_s - 1.0) < 1e-3 and timeline.video_offset_s == 0.0
    assert timeline.covered.tolist() == [False, True, True]
    assert "the audio starts at 1.00 s" in timeline.coverage()["missing"]
    (twin_x, twin_valid), (late_x, late_valid) = _embeddings(twin), _embeddings(late)
    for name in twin_x:
        np.testing.assert_allclose(late_x[name], twin_x[name], atol=1e-5, rtol=0, err_msg=name)
    assert twin_valid["debug_audio"].all() and late_valid["debug_audio"].tolist() == [False, True, True]
    assert late_valid["debug_visual"].all()


@pytest.mark.parametrize("ext", ["mp4", "mov"])
@pytest.mark.parametrize("rotation_deg", [90, 180, 270])
def test_display_rotation_is_honoured(media, tmp_path, ext, rotation_deg):
    turned = remux(media["mp4"], tmp_path / f"turned.{ext}", rotation_deg=rotation_deg)
    info = probe_video(turned)
    assert info.orientation.rotation_deg == rotation_deg and not info.orientation.mirrored
    size = (120, 120)  # no resizing of the shorter side: the turned picture is the stored one, turned
    stored = read_frames(media["mp4"], [0.5], [size])[size][0]
    shown = read_frames(turned, [0.5], [size])[size][0]
    np.testing.assert_array_equal(shown, np.rot90(stored, rotation_deg // 90))


def test_a_sideways_phone_video_gives_its_upright_twins_embeddings(tmp_path):
    """The real phone video's frames, stored sideways with a display matrix (as phones write them) and stored
    upright, both losslessly: the same per-second embeddings."""
    phone = shared_dir() / "media" / "bento.mp4"
    if not phone.is_file():
        pytest.skip(f"{phone} is missing (AVSCENE_SHARED)")
    with av.open(str(phone)) as container:
        planes = [[np.asarray(p) for p in _planes(f)] for f in container.decode(video=0)]
    n = len(planes)

    def write(path: Path, frames: list[list[np.ndarray]], rotation_deg: int | None) -> Path:
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=FPS, options={"qp": "0", "preset": "ultrafast"})
            stream.height, stream.width = frames[0][0].shape
            stream.pix_fmt = "yuv420p"
            if rotation_deg is not None:
                stream.set_display_rotation(rotation_deg)
            for i, ys in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.concatenate([ys[0], ys[1].reshape(-1, ys[0].shape[1]),
                                                                   ys[2].reshape(-1, ys[0].shape[1])]), format="yuv420p")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        return path

    upright = write(tmp_path / "upright.mp4", planes, None)
    sideways = write(tmp_path / "sideways.mp4", [[np.rot90(p, -1) for p in f] for f in planes], 90)  # turned clockwise
    assert probe_video(sideways).orientation.describe() == "rotated 90" and n >= FPS
    extractor = create_extractor("debug_visual", device="cpu")
    shown = [np.concatenate([c.embeddings["debug_visual"] for c in iter_embeddings(Clip("x", "", "", p, None), [extractor])])
             for p in (upright, sideways)]
    np.testing.assert_array_equal(shown[1], shown[0])


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in frame.planes]


def test_a_long_clip_is_extracted_in_chunks_with_the_same_numbers(tiny_dataset, tiny_store, tmp_path, monkeypatch):
    """Clips longer than STREAM_CLIP_SECONDS are decoded and embedded chunk by chunk: the store gets the numbers of the
    one-chunk decode (three of the tiny dataset's clips, against the session's store of them)."""
    from extract import runner
    from extract.manifest import read_manifest
    from extract.store import EmbeddingStore

    clips = read_manifest(tiny_dataset).clips[:3]
    manifest = tmp_path / "three.csv"
    manifest.write_text("video,audio,label,split\n" + "".join(
        f"{c.video_path},{c.audio_path},{c.label},{c.split}\n" for c in clips))
    monkeypatch.setattr(runner, "STREAM_CLIP_SECONDS", 1)
    monkeypatch.setattr(runner, "STREAM_CHUNK_SECONDS", 2)  # 3-s clips: chunks of 2 s and 1 s
    streamed = str(tmp_path / "streamed.zarr")
    summary = runner.run_extraction(runner.RunConfig(data=manifest, store=streamed, device="cpu", progress=False,
                                                     extractors=("debug_visual", "debug_audio")))
    assert summary.seconds["streamed"] > 0 and sum(summary.done.values()) == 2 * len(clips)
    whole, chunked = EmbeddingStore.open(tiny_store), EmbeddingStore.open(streamed)
    rows = [list(whole.clips.ids).index(c.clip_id) for c in clips]
    for name in ("debug_visual", "debug_audio"):
        group = f"extractors/{name}/original"
        for array in ("status", "valid"):
            np.testing.assert_array_equal(chunked.root[f"{group}/{array}"][:], whole.root[f"{group}/{array}"][:][rows])
        np.testing.assert_allclose(chunked.root[f"{group}/embeddings"][:].astype(np.float32),
                                   whole.root[f"{group}/embeddings"][:][rows].astype(np.float32), atol=2e-3, rtol=2e-3)


def test_the_store_records_coverage_and_rotation_and_info_lists_partial_clips(media, late_audio, tmp_path, capsys):
    from extract.cli import main as extract_main
    from extract.runner import RunConfig, run_extraction
    from extract.store import EmbeddingStore

    turned = remux(media["mp4"], tmp_path / "turned.mp4", rotation_deg=90)
    manifest = tmp_path / "clips.csv"
    manifest.write_text("video,audio,label,split\n" + "".join(
        f"{p},,{label},train\n" for p, label in ((media["ts"], "a"), (late_audio[1], "b"), (turned, "a"))))
    store = str(tmp_path / "s.zarr")
    run_extraction(RunConfig(data=manifest, store=store, extractors=("debug_visual", "debug_audio"), device="cpu",
                             progress=False))
    clips = EmbeddingStore.open(store).clips
    assert clips.n_seconds.tolist() == [3, 3, 3] and clips.seconds_covered.tolist() == [3, 2, 3]
    assert np.allclose(clips.duration_s, 3.0, atol=0.05)
    assert [bool(m) for m in clips.coverage_missing] == [False, True, False]
    assert clips.orientation.tolist() == ["", "", "rotated 90"]
    valid = EmbeddingStore.open(store).root["extractors/debug_audio/original/valid"][:]
    assert valid[:, :3].tolist() == [[True] * 3, [False, True, True], [True] * 3]
    assert extract_main(["info", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "1 clip(s) with partial coverage" in out and "2 of 3.00 s: the audio starts at 1.00 s" in out
