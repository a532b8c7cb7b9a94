"""Valid videos the encoder cannot take as they are (odd sizes, RGB sources), and temp files that
killed runs left behind: each is made up, tagged as its pixels are, or cleared on the next run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from apply.video import apply_to_video
from faces.tracking import FaceTracker
from models.atomic import remove_leftovers, temp_path

ROOT = Path(__file__).resolve().parents[2]
RATE, FRAMES = 15, 6
BACKGROUND = (200, 60, 40)  # a saturated colour: a wrong matrix shifts it by tens of levels
SIZE = 64


def tint(faces: np.ndarray) -> np.ndarray:
    """A stand-in makeup model with the runner contract (1x3xSxS in [0, 1] -> made-up face)."""
    return np.clip(faces + np.array([0.08, -0.04, 0.02], np.float32)[None, :, None, None], 0, 1)


def scene(width: int, height: int) -> list[np.ndarray]:
    """The public-domain astronaut portrait on a coloured background, drifting a pixel a frame."""
    portrait = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((200, 200)))
    frames = []
    for index in range(FRAMES):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = BACKGROUND
        frame[10:210, 30 + index:230 + index] = portrait
        frames.append(frame)
    return frames


def write(path: Path, frames: list[np.ndarray], codec: str, pixel_format: str, container: str | None = None) -> Path:
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=RATE)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pixel_format
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def as_a_player_shows(frame: av.VideoFrame) -> np.ndarray:
    """RGB as a player decodes the frame by its tags: the RGB "matrix" (0) on YUV planes means the
    planes are G, B, R (H.264's matrix_coefficients 0 is the identity); any other matrix and range
    are applied as tagged."""
    if frame.colorspace == 0 and not frame.format.is_rgb:
        full = frame.reformat(format="yuv444p")
        g, b, r = (np.asarray(plane) for plane in full.to_ndarray().reshape(3, full.height, full.width))
        return np.stack([r, g, b], axis=-1)
    return frame.reformat(format="rgb24", src_colorspace=frame.colorspace,
                          src_color_range=frame.color_range).to_ndarray()


def made_up(clip: Path, out: Path) -> tuple[list[av.VideoFrame], dict]:
    result = apply_to_video(tint, FaceTracker(256), clip, out, 1.0, progress=False)
    assert result.most_faces == 1
    with av.open(str(result.path)) as video:
        frames = [frame for frame in video.decode(video=0)]
        tags = {tag: getattr(frames[0], tag) for tag in ("colorspace", "color_range")}
        return [as_a_player_shows(frame) for frame in frames], tags | {"format": frames[0].format.name}


def assert_background_kept(frames: list[np.ndarray]) -> None:
    corner = np.stack([frame[-12:, -12:].reshape(-1, 3) for frame in frames]).astype(int)
    assert np.abs(corner - np.array(BACKGROUND)).max() <= 6, corner.mean(axis=(0, 1))


def test_an_odd_sized_clip_is_made_up_one_pixel_larger_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    clip = write(tmp_path / "odd.mp4", scene(321, 241), "mpeg4", "yuv420p")
    frames, tags = made_up(clip, tmp_path / "out")
    assert frames[0].shape == (242, 322, 3) and len(frames) == FRAMES
    assert_background_kept(frames)
    assert "odd.mp4 is 321x241" in caplog.text and "322x242" in caplog.text


@pytest.mark.parametrize("codec, pixel_format, name", [("png", "rgb24", "frames.mov"),
                                                        ("libx264rgb", "rgb24", "rgb.mp4")])
def test_an_rgb_source_is_tagged_with_the_matrix_its_pixels_are_in(tmp_path, codec, pixel_format, name):
    try:
        clip = write(tmp_path / name, scene(320, 240), codec, pixel_format)
    except av.error.FFmpegError as error:  # an encoder this build of FFmpeg lacks
        pytest.skip(f"{codec}: {error}")
    frames, tags = made_up(clip, tmp_path / "out")
    assert tags["colorspace"] != 0 or tags["format"].startswith(("gbr", "rgb")), tags
    assert_background_kept(frames)


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    return int(finished.stdout)


def test_only_temp_files_of_processes_that_are_gone_are_cleared(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".clip_makeup.mp4.{dead_pid()}.tmp"
        live = tmp_path / f".clip_makeup.mp4.{sleeper.pid}.tmp"
        mine = temp_path(tmp_path / "photo_makeup.png")
        result = tmp_path / "clip_makeup.mp4"
        for path in (stale, live, mine, result):
            path.write_bytes(b"x")
        assert sorted(remove_leftovers(tmp_path)) == sorted([stale, mine])
        assert live.exists() and result.exists() and not stale.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_killed_video_run_leaves_no_temp_file_after_the_next_run(artifacts, tmp_path):
    frames = scene(320, 240)
    long_clip = write(tmp_path / "long.mp4", frames * 25, "libx264", "yuv420p")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "apply", "--model", str(artifacts / "tinybeauty.onnx"), "--out", str(out)]
    run = subprocess.Popen([*command, str(long_clip)], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    while not list(out.glob(".long_makeup.mp4.*.tmp")):  # the encoder has started writing
        assert run.poll() is None, "apply ended before it started writing"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert list(out.glob(".*.tmp"))  # what the kill left
    short_clip = write(tmp_path / "short.mp4", frames, "libx264", "yuv420p")
    assert subprocess.run([*command, str(short_clip)], cwd=ROOT, capture_output=True).returncode == 0
    assert os.listdir(out) == ["short_makeup.mp4"]
