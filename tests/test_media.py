"""Media I/O: probing, frame sampling by time, audio loading and windowing, synthetic media writers."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from extract.audio_io import AudioSeconds, audio_info, audio_windows, load_audio, seconds_in
from avscene.errors import MediaError
from avscene.demo.synthetic import DEMO_SCENES, make_demo_dataset, write_wav
from extract.video_io import VideoInfo, choose_strategy, probe_video, read_frames, video_seconds
from tests.conftest import require_shared
from tests.timestamp_media import GeneratedMedia, read_timestamp, timestamp_frame, write_timestamp_video

SIZES = [(256, 224), (240, 200)]
VIDEO_CASES = [(10, 5), (30, 5), (10, 250), (30, 250)]  # (fps, gop)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], GeneratedMedia]:
    """3.3-s 320x240 timestamp videos, keyed by (fps, gop)."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        (fps, gop): write_timestamp_video(folder / f"ts_{fps}fps_gop{gop}.mp4", round(3.3 * fps), fps, 320, 240, gop)
        for fps, gop in VIDEO_CASES
    }


@pytest.fixture(scope="module")
def video_with_audio(tmp_path_factory: pytest.TempPathFactory) -> GeneratedMedia:
    folder = tmp_path_factory.mktemp("av")
    return write_timestamp_video(folder / "ts_audio.mp4", 20, 10, 320, 240, 10, with_audio=True)


# ---------------------------------------------------------------- timestamp code


@pytest.mark.parametrize("index", [0, 1, 5, 99, 512, 1023])
def test_timestamp_code_round_trip_through_resize_and_crop(index: int) -> None:
    frame = timestamp_frame(index, 320, 240)
    assert read_timestamp(frame) == index
    resized = frame[::2, ::2]  # 160 x 120
    crop = resized[10:110, 30:130]  # centre 100 x 100
    assert read_timestamp(crop) == index


def test_timestamp_reader_rejects_frames_without_code() -> None:
    with pytest.raises(ValueError):
        read_timestamp(np.full((64, 64, 3), 128, dtype=np.uint8))


# ---------------------------------------------------------------- video


@pytest.mark.parametrize("case", VIDEO_CASES, ids=[f"{f}fps-gop{g}" for f, g in VIDEO_CASES])
def test_probe_generated_video(videos: dict, case: tuple[int, int]) -> None:
    media = videos[case]
    info = probe_video(media.path)
    assert (info.width, info.height, info.n_frames) == (320, 240, media.n_frames)
    assert info.fps == pytest.approx(media.fps)
    assert info.duration_s == pytest.approx(media.duration_s, abs=1e-6)
    expected_keyframes = [i / media.fps for i in range(0, media.n_frames, media.gop)]
    assert info.keyframe_times_s == pytest.approx(expected_keyframes)
    assert video_seconds(info) == 3
    assert "write_timestamp_video(" in media.command


@pytest.mark.parametrize("case", VIDEO_CASES, ids=[f"{f}fps-gop{g}" for f, g in VIDEO_CASES])
def test_frames_at_half_seconds_are_exact_and_strategies_agree(videos: dict, case: tuple[int, int]) -> None:
    media = videos[case]
    times_s = [k + 0.5 for k in range(3)]
    by_strategy = {s: read_frames(media.path, times_s, SIZES, strategy=s) for s in ("seek", "sequential", "auto")}
    for strategy, frames in by_strategy.items():
        for (_, crop_px), array in frames.items():
            assert array.shape == (3, crop_px, crop_px, 3) and array.dtype == np.uint8
            assert [read_timestamp(f) for f in array] == [math.floor(t * media.fps) for t in times_s], strategy
    for size in SIZES:
        assert np.array_equal(by_strategy["seek"][size], by_strategy["sequential"][size])


def test_frames_in_any_order_before_on_and_past_the_end(videos: dict) -> None:
    media = videos[(30, 5)]
    times_s = [2.5, 0.0, 99.0, 1.0 / 30, 0.5, 0.5]
    expected = [75, 0, media.n_frames - 1, 1, 15, 15]
    for strategy in ("seek", "sequential"):
        frames = read_frames(media.path, times_s, [(240, 240)], strategy=strategy)[(240, 240)]
        assert [read_timestamp(f) for f in frames] == expected, strategy


def test_choose_strategy_follows_keyframe_density(videos: dict) -> None:
    times_s = [k + 0.5 for k in range(3)]
    assert choose_strategy(probe_video(videos[(30, 5)].path), times_s) == "seek"
    assert choose_strategy(probe_video(videos[(30, 250)].path), times_s) == "sequential"
    assert choose_strategy(probe_video(videos[(10, 250)].path), times_s) == "sequential"


def test_choose_strategy_on_ten_second_1080p_layouts() -> None:
    """GUIDE 'Facts for decoding': 10 s at 30 fps, GOP 30 -> seek; a single keyframe -> sequential."""
    times_s = [k + 0.5 for k in range(10)]

    def info(gop: int) -> VideoInfo:
        return VideoInfo(Path("x.mp4"), 1920, 1080, 30.0, 10.0, 300, tuple(i / 30 for i in range(0, 300, gop)))

    assert choose_strategy(info(30), times_s) == "seek"
    assert choose_strategy(info(300), times_s) == "sequential"


def test_resize_keeps_aspect_for_portrait_and_landscape(tmp_path: Path) -> None:
    for width, height in [(320, 180), (180, 320)]:
        media = write_timestamp_video(tmp_path / f"{width}x{height}.mp4", 5, 10, width, height, 5)
        frames = read_frames(media.path, [0.25], [(90, 90)])[(90, 90)]
        assert frames.shape == (1, 90, 90, 3)
        assert read_timestamp(frames[0]) == 2


def test_read_frames_rejects_bad_arguments(videos: dict) -> None:
    path = videos[(10, 5)].path
    with pytest.raises(ValueError, match="seek"):
        read_frames(path, [0.5], SIZES, strategy="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop_px"):
        read_frames(path, [0.5], [(100, 120)])


def test_real_bento_video_and_its_audio_track() -> None:
    path = require_shared("media", "bento.mp4")
    info = probe_video(path)
    assert (info.width, info.height, info.n_frames) == (320, 568, 11)
    assert info.fps == pytest.approx(10.0)
    assert video_seconds(info) == 1
    seek = read_frames(path, [0.5], [(256, 224)], strategy="seek")[(256, 224)]
    sequential = read_frames(path, [0.5], [(256, 224)], strategy="sequential")[(256, 224)]
    assert seek.shape == (1, 224, 224, 3) and np.array_equal(seek, sequential)
    assert seek.std() > 5  # a real picture, not a blank frame
    rate_hz, n_frames, n_channels = audio_info(path)
    waveform, loaded_rate_hz = load_audio(path)
    assert (rate_hz, loaded_rate_hz, n_channels) == (44100, 44100, 1)
    assert waveform.dtype == np.float32 and waveform.shape[0] == 1
    assert abs(waveform.shape[1] - n_frames) <= 2048  # AAC frames of 1024 samples
    assert 0.01 < np.abs(waveform).max() <= 1.0
    windows = audio_windows(waveform, loaded_rate_hz, seconds_in(n_frames / rate_hz), 32000, "mono")
    assert windows.shape == (1, 1, 32000)


def test_audio_track_of_generated_mp4(video_with_audio: GeneratedMedia) -> None:
    waveform, rate_hz = load_audio(video_with_audio.path)
    assert rate_hz == 48000 and waveform.shape[0] == 1
    assert waveform.shape[1] == pytest.approx(2 * 48000, abs=2048)
    spectrum = np.abs(np.fft.rfft(waveform[0, :48000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1-Hz bins


# ---------------------------------------------------------------- audio


def test_seconds_in_tolerates_a_missing_sample() -> None:
    assert seconds_in(479_999 / 48_000) == 10
    assert seconds_in(480_001 / 48_000) == 10
    assert seconds_in(9.995) == 10
    assert seconds_in(9.98) == 9
    assert seconds_in(0.5) == 0
    assert seconds_in(0.0) == 0


def test_real_tau_wavs_including_off_by_one_lengths() -> None:
    manifest = require_shared("tau", "audio", "MANIFEST.tsv")
    with manifest.open() as handle:
        frames_by_file = {row["file"]: int(row["frames"]) for row in csv.DictReader(handle, delimiter="\t")}
    picked = [next(f for f, n in frames_by_file.items() if n == target) for target in (480_000, 479_999, 480_001)]
    for name in picked:
        path = manifest.parent / name
        assert sf.info(str(path)).subtype == "PCM_24"
        assert audio_info(path) == (48_000, frames_by_file[name], 2)
        waveform, rate_hz = load_audio(path)
        assert rate_hz == 48_000 and waveform.shape == (2, frames_by_file[name]) and waveform.dtype == np.float32
        assert np.abs(waveform).max() <= 1.0
        n_seconds = seconds_in(frames_by_file[name] / rate_hz)
        assert n_seconds == 10
        assert audio_windows(waveform, rate_hz, n_seconds, 32_000, "mono").shape == (10, 1, 32_000)
        stereo = audio_windows(waveform, rate_hz, n_seconds, 48_000, "stereo")
        assert stereo.shape == (10, 2, 48_000)
        np.testing.assert_array_equal(stereo[3], waveform[:, 3 * 48_000 : 4 * 48_000])
        if frames_by_file[name] == 479_999:
            assert np.all(stereo[9, :, -1] == 0.0)  # the missing last sample is zero-padded


@pytest.mark.parametrize(
    ("subtype", "tolerance"), [("PCM_U8", 1e-2), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 0)]
)
def test_wav_subtypes_load_as_float(tmp_path: Path, subtype: str, tolerance: float) -> None:
    rng = np.random.default_rng(0)
    waveform = rng.uniform(-0.9, 0.9, (2, 4800)).astype(np.float32)
    path = tmp_path / f"{subtype}.wav"
    write_wav(path, waveform, 16_000, subtype=subtype)
    loaded, rate_hz = load_audio(path)
    assert rate_hz == 16_000 and loaded.dtype == np.float32 and loaded.shape == (2, 4800)
    np.testing.assert_allclose(loaded, waveform, atol=tolerance)
    assert audio_info(path) == (16_000, 4800, 2)


def test_audio_windows_channel_layouts() -> None:
    rng = np.random.default_rng(1)
    six = rng.uniform(-1, 1, (6, 2000)).astype(np.float32)
    mono_in = six[:1]
    assert np.allclose(audio_windows(six, 1000, 2, 1000, "mono")[:, 0], six.mean(axis=0).reshape(2, 1000))
    stereo = audio_windows(six, 1000, 2, 1000, "stereo")
    np.testing.assert_array_equal(stereo, six[:2].reshape(2, 2, 1000).transpose(1, 0, 2))
    duplicated = audio_windows(mono_in, 1000, 2, 1000, "stereo")
    assert duplicated.shape == (2, 2, 1000)
    np.testing.assert_array_equal(duplicated[:, 0], duplicated[:, 1])
    np.testing.assert_array_equal(audio_windows(mono_in, 1000, 2, 1000, "mono")[:, 0], mono_in.reshape(2, 1000))


def test_audio_windows_resampling_keeps_frequency() -> None:
    rate_hz, tone_hz = 44_100, 1_000.0
    t_s = np.arange(3 * rate_hz) / rate_hz
    waveform = (0.5 * np.sin(2 * np.pi * tone_hz * t_s))[None].astype(np.float32)
    windows = audio_windows(waveform, rate_hz, 3, 32_000, "mono")
    assert windows.shape == (3, 1, 32_000) and windows.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(windows[1, 0]))
    assert np.argmax(spectrum) == 1000  # 1-Hz bins
    assert np.abs(windows[1]).max() == pytest.approx(0.5, abs=0.01)


def test_audio_windows_pads_a_short_tail_and_crops_extra() -> None:
    waveform = np.ones((1, 1500), dtype=np.float32)
    padded = audio_windows(waveform, 1000, 2, 1000, "mono")
    assert padded.shape == (2, 1, 1000)
    assert np.all(padded[0] == 1.0) and np.all(padded[1, 0, :500] == 1.0) and np.all(padded[1, 0, 500:] == 0.0)
    assert audio_windows(waveform, 1000, 1, 1000, "mono").shape == (1, 1, 1000)
    assert audio_windows(waveform, 1000, 0, 1000, "mono").shape == (0, 1, 1000)


def test_audio_windows_rejects_bad_arguments() -> None:
    waveform = np.zeros((2, 100), dtype=np.float32)
    with pytest.raises(ValueError, match="mono"):
        audio_windows(waveform, 100, 1, 100, "quad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples"):
        audio_windows(waveform[0], 100, 1, 100, "mono")
    with pytest.raises(ValueError, match="positive"):
        audio_windows(waveform, 0, 1, 100, "mono")
    with pytest.raises(ValueError, match="n_seconds"):
        audio_windows(waveform, 100, -1, 100, "mono")


# ---------------------------------------------------------------- failures


def _assert_media_error(call, path: Path, match: str = "") -> None:
    with pytest.raises(MediaError, match=match) as caught:
        call(path)
    assert str(caught.value).startswith(str(path))


def test_empty_wav_raises_media_error() -> None:
    path = require_shared("media", "empty.wav")
    for call in (load_audio, audio_info):
        _assert_media_error(call, path, "no audio samples")


def test_missing_and_non_media_files_raise_media_error(tmp_path: Path) -> None:
    not_media = tmp_path / "notes.mp4"
    not_media.write_text("this is not a video\n" * 50)
    for path, match in [(tmp_path / "missing.wav", "not found"), (not_media, "not a readable media file")]:
        for call in (load_audio, audio_info, probe_video, lambda p: read_frames(p, [0.5], SIZES)):
            _assert_media_error(call, path, match)


def test_text_and_still_images_are_refused_as_video_with_the_file_named(tmp_path: Path) -> None:
    """FFmpeg's tty demuxer opens a text file as 'video'; image demuxers open a single picture: neither is a video."""
    from PIL import Image

    notes = tmp_path / "notes.txt"
    notes.write_text("".join(f"line {i} of a user's notes about the recordings\n" for i in range(200)))
    with pytest.raises(MediaError, match=r"notes.txt: not a video: FFmpeg reads it as text \(tty demuxer"):
        probe_video(notes)
    for name in ("still.png", "still.jpg"):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / name)
        with pytest.raises(MediaError, match=rf"{name}: not a video: a still image"):
            probe_video(tmp_path / name)


def test_wav_has_no_video_stream() -> None:
    _assert_media_error(probe_video, require_shared("media", "chirp_mono.wav"), "no video stream")


def test_mp4_without_audio_stream(videos: dict) -> None:
    path = videos[(10, 5)].path
    for call in (load_audio, audio_info):
        _assert_media_error(call, path, "no audio")


def _damaged_copies(media: GeneratedMedia, folder: Path) -> list[Path]:
    data = media.path.read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    corrupted = bytearray(data)
    moov = data.find(b"moov")  # libx264 mp4s keep the index at the end: damage only the media data
    noise = np.random.default_rng(0).integers(0, 256, moov // 2 - moov // 4, dtype=np.uint8)
    corrupted[moov // 4 : moov // 2] = noise.tobytes()
    damaged = folder / "corrupted.mp4"
    damaged.write_bytes(bytes(corrupted))
    return [truncated, damaged]


def test_damaged_mp4_decodes_or_raises_media_error(video_with_audio: GeneratedMedia, tmp_path: Path) -> None:
    calls = {
        "probe": probe_video,
        "seek": lambda p: read_frames(p, [0.5, 1.5], SIZES, strategy="seek"),
        "sequential": lambda p: read_frames(p, [0.5, 1.5], SIZES, strategy="sequential"),
        "audio": load_audio,
        "audio_info": audio_info,
    }
    for path in _damaged_copies(video_with_audio, tmp_path):
        for name, call in calls.items():
            try:
                call(path)
            except MediaError as err:
                assert str(err).startswith(str(path)), name
            # any other exception type propagates and fails the test


# ---------------------------------------------------------------- synthetic dataset


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return rows[0], rows[1:]


def test_demo_dataset_layout(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", clips_per_scene=1, seconds=2)
    header, meta = _read_table(root / "meta.csv")
    assert header == ["filename_audio", "filename_video", "scene_label", "identifier"]
    assert sorted(row[2] for row in meta) == sorted(DEMO_SCENES)
    for audio, video, scene, identifier in meta:
        stem = Path(audio).stem
        assert audio == f"audio/{stem}.wav" and video == f"video/{stem}.mp4"
        assert stem.startswith(f"{scene}-{identifier}-") and len(stem.split("-")) == 4
        assert audio_info(root / audio) == (48_000, 96_000, 2)
        assert sf.info(str(root / audio)).subtype == "PCM_16"
    info = probe_video(root / meta[0][1])
    assert (info.width, info.height, video_seconds(info)) == (160, 96, 2)
    train_header, train = _read_table(root / "evaluation_setup" / "fold1_train.csv")
    assert train_header == ["filename_audio", "filename_video", "scene_label"] and len(train) == 10
    evaluate_header, evaluate = _read_table(root / "evaluation_setup" / "fold1_evaluate.csv")
    assert evaluate_header == train_header and evaluate == []
    assert _read_table(root / "evaluation_setup" / "fold1_test.csv") == (["filename_audio", "filename_video"], [])


def test_demo_dataset_splits_by_location(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", clips_per_scene=4, seconds=1, seed=3)
    _, meta = _read_table(root / "meta.csv")
    location = {row[0]: row[3] for row in meta}
    _, train = _read_table(root / "evaluation_setup" / "fold1_train.csv")
    _, evaluate = _read_table(root / "evaluation_setup" / "fold1_evaluate.csv")
    _, test = _read_table(root / "evaluation_setup" / "fold1_test.csv")
    assert (len(train), len(evaluate)) == (30, 10)
    assert not {location[r[0]] for r in train} & {location[r[0]] for r in evaluate}
    assert test == [row[:2] for row in evaluate]
    assert sorted(r[0] for r in train + evaluate) == sorted(location)


@pytest.mark.parametrize("block_seconds, request_seconds", [(1, 1), (2, 3), (30, 4)])
def test_audio_seconds_in_requests_equal_the_whole_file(tmp_path, block_seconds, request_seconds):
    """Windows cut from consecutive requests (with their margins) equal those cut from the whole file: resampling
    and the 0.5-s context of each window see the real neighbouring audio, not a block edge."""
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.wav"
    write_wav(path, rng.uniform(-0.5, 0.5, (2, int(7.6 * 44_100))).astype(np.float32), 44_100)
    whole, rate_hz = load_audio(path)
    fmt = (16_000, "mono", 8_000)  # resampled, half a second of context on each side
    expected = audio_windows(whole, rate_hz, 7, *fmt)
    seconds = AudioSeconds(path, block_seconds, margin_seconds=2)
    got = []
    for start in range(0, 7, request_seconds):
        count = min(request_seconds, 7 - start)
        waveform, lead = seconds.around(start, count)
        got.append(audio_windows(waveform, seconds.rate_hz, lead + count, *fmt)[lead:])
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-6)
    with pytest.raises(ValueError, match="already dropped"):
        seconds.around(0, 1)
