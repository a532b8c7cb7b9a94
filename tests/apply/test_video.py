"""apply on video files: size, frame rate, frames, audio and rotation kept; faces made up; bad files refused.

Every clip is made here with PyAV (FFmpeg's real encoders), a few hundred pixels and 12 frames.
"""

import logging
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image
from skimage import data as skimage_data

from apply.__main__ import main as apply_main
from apply.composite import face_regions, made_up_faces, make_up_frame
from apply.video import apply_to_video, quarter_turns, to_coded
from export.loading import load_model
from faces import Alignment
from faces.tracking import FaceTracker

FRAMES, RATE = 12, 15
SIZE = (320, 240)  # width, height
PORTRAIT_AT = (40, 10)  # where the 220-pixel portrait sits in the first frame (then a pixel right a frame)
BACKGROUND = 100
AUDIO = {"aac": ("fltp", 44100), "libopus": ("flt", 48000)}


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The public-domain NASA astronaut portrait (Eileen Collins), 220 x 220."""
    return np.asarray(Image.fromarray(skimage_data.astronaut()).resize((220, 220)))


def scene_frames(portrait: np.ndarray | None, frames: int = FRAMES) -> list[np.ndarray]:
    """Upright frames: the portrait drifting right a pixel a frame (12 frames, then again) on a
    flat background."""
    width, height = SIZE
    x, y = PORTRAIT_AT
    shots = []
    for index in range(frames):
        frame = np.full((height, width, 3), BACKGROUND, np.uint8)
        if portrait is not None:
            left = x + index % FRAMES
            frame[y:y + portrait.shape[0], left:left + portrait.shape[1]] = portrait
        shots.append(frame)
    return shots


def write_clip(path, frames: list[np.ndarray], *, container=None, video_codec="libx264", audio_codec="aac",
               rotation=None):
    """A clip with a sine tone as long as the video; ``rotation``: the display matrix's angle."""
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(video_codec, rate=RATE)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        if rotation is not None:
            video.set_display_rotation(rotation)
        audio = None
        if audio_codec:
            sample_format, rate = AUDIO[audio_codec]
            audio = out.add_stream(audio_codec, rate=rate)
            audio.layout = "mono"
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode())
        if audio is not None:
            samples = rate * len(frames) // RATE
            tone = (0.3 * np.sin(np.arange(samples) * 2 * np.pi * 440 / rate)).astype(np.float32)[None]
            sound = av.AudioFrame.from_ndarray(tone, format=sample_format, layout="mono")
            sound.sample_rate, sound.pts = rate, 0
            out.mux(audio.encode(sound))
            out.mux(audio.encode())
    return path


def read_clip(path) -> dict:
    with av.open(str(path)) as clip:
        video = clip.streams.video[0]
        info = {"format": clip.format.name, "codec": video.codec_context.name, "rate": video.average_rate,
                "size": (video.codec_context.width, video.codec_context.height),
                "audio": clip.streams.audio[0].codec_context.name if clip.streams.audio else None}
        frames = list(clip.decode(video=0))
        info["times"] = [round(frame.time, 4) for frame in frames]
        info["rotation"] = frames[0].rotation
        info["pixels"] = np.stack([frame.to_ndarray(format="rgb24") for frame in frames])
    with av.open(str(path)) as clip:
        sound = clip.streams.audio
        info["audio_packets"] = [bytes(packet) for packet in clip.demux(audio=0) if packet.size] if sound else []
    return info


def run_apply(model, clips, out, *extra) -> int:
    return apply_main(["--model", str(model), *map(str, clips), "--out", str(out), *extra])


def test_each_container_keeps_size_rate_frames_and_audio(artifacts, portrait, tmp_path):
    frames = scene_frames(portrait)
    clips = [write_clip(tmp_path / "a.mp4", frames), write_clip(tmp_path / "b.mov", frames),
             write_clip(tmp_path / "c.mkv", frames, container="matroska"),
             write_clip(tmp_path / "d.webm", frames, video_codec="libvpx-vp9", audio_codec="libopus")]
    assert run_apply(artifacts / "tinybeauty.onnx", clips, tmp_path / "out") == 0
    for clip in clips:
        before, after = read_clip(clip), read_clip(tmp_path / "out" / f"{clip.stem}_makeup{clip.suffix}")
        for key in ("format", "size", "rate", "times", "audio"):
            assert after[key] == before[key], (clip.name, key)
        assert len(after["times"]) == FRAMES
        assert after["audio_packets"] == before["audio_packets"]  # remuxed packet for packet
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_makeup.mp4", "b_makeup.mov", "c_makeup.mkv", "d_makeup.webm"]  # no temp files left


def test_audio_the_container_cannot_carry_is_reencoded(artifacts, portrait, tmp_path):
    # A Matroska file with AAC sound named .webm: WebM takes Opus or Vorbis only.
    clip = write_clip(tmp_path / "misnamed.webm", scene_frames(portrait), container="matroska")
    assert run_apply(artifacts / "tinybeauty.onnx", [clip], tmp_path / "out") == 0
    after = read_clip(tmp_path / "out" / "misnamed_makeup.webm")
    assert (after["codec"], after["audio"]) == ("vp9", "opus")
    assert len(after["times"]) == FRAMES and after["audio_packets"]
    with av.open(str(tmp_path / "out" / "misnamed_makeup.webm")) as made_up:
        seconds = sum(frame.samples for frame in made_up.decode(audio=0)) / 48000
    assert seconds == pytest.approx(FRAMES / RATE, abs=0.05)


FACE_AREA = (100, 20, 196, 116)  # x0, y0, x1, y1: the astronaut's face and its mask, in every frame
FAR_ROWS = 130  # from this row down: the suit and the background, far below the face's crop


def visible(runner, gain: float = 100.0):
    """The test model's makeup, made visible: its residual x gain. The 2-epoch test model adds a
    level or two, what re-encoding alone moves a pixel; a real model adds tens."""
    return lambda faces, **maps: np.clip(faces + gain * (np.asarray(runner(faces, **maps)) - faces), 0, 1
                                         ).astype(np.float32)


def face_blocks(frames: np.ndarray, block: int = 4) -> np.ndarray:
    """Means over 4x4 blocks of the face area: colour as 4:2:0 video keeps it (chroma at half
    resolution), and codec noise averaged out."""
    x0, y0, x1, y1 = FACE_AREA
    area = frames[:, y0:y1, x0:x1].astype(np.float64)
    count, height, width, channels = area.shape
    return area.reshape(count, height // block, block, width // block, block, channels).mean(axis=(2, 4))


def expected_makeup(runner, image_size: int, upright: np.ndarray, region_names: tuple[str, ...]) -> np.ndarray:
    """What the makeup should add to each upright frame (int16), by the tracker, each face's region maps from its
    mesh (a model that reads ``region_names``) and the compositing."""
    tracker = FaceTracker(image_size)
    added = []
    for index, frame in enumerate(upright):
        made_up = frame.copy()
        faces = tracker.update(frame, index / RATE)
        maps = face_regions(None, region_names, [(face.alignment, face.landmarks) for face in faces]).maps
        make_up_frame(runner, made_up, [face.alignment for face in faces], 1.0, maps=maps)
        added.append(made_up.astype(np.int16) - frame)
    return np.stack(added)


def assert_made_up_within_codec_noise(added: np.ndarray, source: np.ndarray, result: np.ndarray) -> None:
    """The result is the source plus the makeup (``added``) on the face, up to codec noise, and
    the source up to codec noise far from it."""
    changed_y, changed_x = np.nonzero((added != 0).any(axis=(0, 3)))
    assert FACE_AREA[0] <= changed_x.min() and changed_x.max() < FACE_AREA[2] \
        and FACE_AREA[1] <= changed_y.min() and changed_y.max() < FACE_AREA[3]  # on the face only
    source, result = source.astype(np.int16), result.astype(np.int16)
    made_up, before, after = face_blocks(source + added), face_blocks(source), face_blocks(result)
    where = np.abs(made_up - before).max(axis=3) > 3
    off_made_up, off_source = np.abs(after - made_up)[where].mean(), np.abs(after - before)[where].mean()
    assert where.sum() > 100 and off_made_up < 3 and off_source > 2 * off_made_up, (off_made_up, off_source)
    far = np.abs(result - source)[:, FAR_ROWS:]
    assert far.mean() < 2.0 and np.percentile(far, 99) <= 10, (far.mean(), np.percentile(far, 99))


def test_a_face_is_made_up_and_the_rest_stays_within_codec_noise(artifacts, portrait, tmp_path):
    clip = write_clip(tmp_path / "face.mp4", scene_frames(portrait))
    model = load_model(artifacts / "tinybeauty.onnx")
    runner, source = visible(model.runner), read_clip(clip)["pixels"]
    results = {}
    for strength in (0.0, 1.0):
        video = apply_to_video(runner, FaceTracker(model.image_size), clip, tmp_path / str(strength), strength,
                               progress=False, region_names=model.region_inputs)
        assert (video.frames, video.most_faces) == (FRAMES, 1)
        results[strength] = read_clip(video.path)["pixels"]
    added = expected_makeup(runner, model.image_size, source, model.region_inputs)
    assert_made_up_within_codec_noise(added, source, results[1.0])
    with pytest.raises(AssertionError):  # the check can fail: no makeup at strength 0
        assert_made_up_within_codec_noise(added, source, results[0.0])


def test_a_phone_portrait_clip_is_tracked_upright_and_keeps_its_rotation(artifacts, portrait, tmp_path):
    upright = scene_frames(portrait)
    stored = [np.ascontiguousarray(np.rot90(frame, 1)) for frame in upright]  # a phone stores it sideways...
    clip = write_clip(tmp_path / "phone.mp4", stored, rotation=-90)  # ...and says: turn 90 degrees clockwise
    assert quarter_turns(-90) == 3 and np.array_equal(np.rot90(stored[0], 3), upright[0])
    model = load_model(artifacts / "tinybeauty.onnx")
    runner = visible(model.runner)
    video = apply_to_video(runner, FaceTracker(model.image_size), clip, tmp_path / "out", 1.0, progress=False,
                           region_names=model.region_inputs)
    before, after = read_clip(clip), read_clip(video.path)
    assert after["rotation"] == before["rotation"] == -90
    assert after["size"] == before["size"] == (SIZE[1], SIZE[0])
    source, result = (np.stack([np.rot90(frame, 3) for frame in clip["pixels"]]) for clip in (before, after))
    assert_made_up_within_codec_noise(expected_makeup(runner, model.image_size, source, model.region_inputs), source,
                                      result)


def test_alignment_on_the_upright_frame_reads_the_same_crop_from_the_coded_one():
    rng = np.random.default_rng(0)
    coded = torch.from_numpy(rng.random((1, 3, 90, 130), dtype=np.float32))
    alignment = Alignment.from_params([48.0, 37.0], 40.0, 0.4, 16)
    identity = lambda crops: crops  # noqa: E731  (a model that adds nothing: the crop itself)
    for turns in range(4):
        upright = torch.rot90(coded, turns, dims=(2, 3))
        in_coded = to_coded(alignment, turns, coded.shape[3], coded.shape[2])
        _, upright_mask = made_up_faces(identity, upright, [alignment], 1.0)
        _, coded_mask = made_up_faces(identity, coded, [in_coded], 1.0)
        assert torch.allclose(torch.rot90(coded_mask, turns, dims=(2, 3)), upright_mask, atol=1e-4), turns


def mux_silence(out, samples: int) -> None:
    """An AAC mono stream of ``samples`` silent samples at 44.1 kHz, muxed into the open container."""
    stream = out.add_stream("aac", rate=44100)
    stream.layout = "mono"
    tone = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
    tone.sample_rate, tone.pts = 44100, 0
    out.mux(stream.encode(tone))
    out.mux(stream.encode())


def bad_videos(folder, portrait) -> dict:
    """Each kind of file apply must refuse, by name."""
    whole = write_clip(folder / "whole.mp4", scene_frames(portrait))
    cut = folder / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    matroska = write_clip(folder / "whole.mkv", scene_frames(portrait), container="matroska")
    cut_mkv = folder / "cut.mkv"
    cut_mkv.write_bytes(matroska.read_bytes()[: matroska.stat().st_size * 2 // 3])
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    sound_only = folder / "sound.mp4"
    with av.open(str(sound_only), "w") as out:
        mux_silence(out, 44100)
    empty = folder / "empty.mkv"
    with av.open(str(empty), "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height = SIZE
        mux_silence(out, 4410)
        out.mux(video.encode())
    faceless = write_clip(folder / "faceless.mp4", scene_frames(None))
    return {cut: "FFmpeg cannot read it", cut_mkv: "cut short", garbage: "FFmpeg cannot read it",
            sound_only: "no video stream", empty: "no frames", faceless: "no face"}


def test_bad_videos_are_named_nothing_is_written_and_the_others_go_on(artifacts, portrait, tmp_path, caplog):
    folder = tmp_path / "clips"
    folder.mkdir()
    bad = bad_videos(folder, portrait)
    good = folder / "whole.mp4"
    assert run_apply(artifacts / "tinybeauty.onnx", [*bad, good], tmp_path / "out") == 1
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    for path, why in bad.items():
        message = next((line for line in errors if f"skipped {path}" in line), "")
        assert why in message and str(path) in message.split("skipped", 1)[1], (path.name, errors)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["whole_makeup.mp4"]  # nothing half-written


def test_a_failure_midway_leaves_nothing_under_the_final_name(artifacts, portrait, tmp_path):
    model = load_model(artifacts / "tinybeauty.onnx")
    calls = []

    def failing_model(faces, **maps):
        calls.append(1)
        if len(calls) > 4:
            raise RuntimeError("the model failed")
        return model.runner(faces, **maps)

    clip = write_clip(tmp_path / "face.mp4", scene_frames(portrait))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the model failed"):
        apply_to_video(failing_model, FaceTracker(model.image_size), clip, out, 1.0, progress=False,
                       region_names=model.region_inputs)
    assert len(calls) == 5 and list(out.iterdir()) == []  # no result, no temp file


def test_a_killed_run_leaves_nothing_under_the_final_name(artifacts, portrait, tmp_path):
    clip = write_clip(tmp_path / "long.mp4", scene_frames(portrait, 150), audio_codec=None)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "apply", "--model", str(artifacts / "tinybeauty.onnx"), str(clip),
               "--out", str(out)]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob(".long_makeup.mp4.*.tmp")):  # the encoder has started writing
        assert run.poll() is None and time.monotonic() < deadline, "apply ended before it started writing"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not (out / "long_makeup.mp4").exists()
