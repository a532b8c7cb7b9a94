"""Video files: every frame's faces tracked and made up; the sound, timing and orientation kept.

Usage (``python -m apply`` picks this path by the file's suffix: .mp4, .mov, .mkv, .webm):
    python -m apply --model artifacts/tinybeauty.onnx clip.mp4 --out made_up/   # -> made_up/clip_makeup.mp4

Decoding and encoding are FFmpeg's libraries inside the PyAV wheel (no system ffmpeg). Faces are
followed from frame to frame (faces.tracking.FaceTracker: detection once, then the mesh on the
region the previous frame predicts, smoothed), and only each face's region of a frame is made up
(apply/composite.py); every other pixel goes to the encoder as decoded. The result keeps the
source's container, coded size, frame timestamps (so its frame rate, constant or not), pixel
format, colour tags and rotation matrix (a phone's portrait clip is tracked upright and plays the
same way round); the first audio stream is copied packet for packet, or re-encoded (AAC, Opus in
WebM) where the container cannot carry its codec. Video is H.264 (libx264, CRF 18), VP9 in WebM.

Four stages overlap in three threads, since FFmpeg and onnxruntime release the GIL: decode,
track + model + composite, encode. The result is written under a hidden temp name beside the
target and renamed at the end: an interrupted or failed run leaves nothing under the final name.
A file that is not a readable video (garbage, no video stream, no frames, truncated, a codec
FFmpeg cannot decode) raises VideoError naming it, and nothing is written.

A model that reads the face's region maps (``region_names``: LoadedModel.region_inputs) gets each face's
maps in each frame, drawn over its crop from the mesh the tracker found for it in that frame
(apply/composite.py); a face without a mesh there gets empty maps, and the log counts them.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from apply.composite import face_regions, make_up_frame
from apply.outputs import CONTAINERS, output_path
from export.runtime import Runner
from faces import Alignment
from models.atomic import atomic_path
from models.data import DataError

log = logging.getLogger("apply")

# The containers taken, by suffix: FFmpeg's muxer name for each.
# Video encoder per container. CRF 18 is visually lossless for H.264; "veryfast" keeps 720p
# encoding near 10 ms a frame. WebM carries VP8/VP9/AV1 only: VP9 in its realtime mode.
X264 = ("libx264", {"crf": "18", "preset": "veryfast"})
VIDEO_ENCODERS = {"webm": ("libvpx-vp9", {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8",
                                          "row-mt": "1"})}
# Audio codecs each container takes as they are (None: any); others are re-encoded.
AUDIO_AS_IS = {"mp4": {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"},
               "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le"},
               "webm": {"opus", "vorbis"}, "matroska": None}
AUDIO_ENCODERS = {"webm": ("libopus", "s16", 48000)}
AAC = ("aac", "fltp", None)  # None: keep the source's sample rate
QUEUE_FRAMES = 8  # frames in flight between two stages: enough to ride out a detection frame
# A file whose frames end this many frame durations before its recorded length was cut short.
TRUNCATION_FRAMES = 2
STAGES = ("decode", "track", "model", "composite", "encode")
# FFmpeg's colour tags (AVColorSpace, AVColorRange, AVColorPrimaries, AVColorTransferCharacteristic).
RGB_MATRIX, BT709, UNSPECIFIED, VIDEO_RANGE = 0, 1, 2, 1


class VideoError(DataError):
    """A file that cannot be read as a video, or holds no frames. Names the file."""


@dataclasses.dataclass
class VideoResult:
    path: Path
    frames: int
    most_faces: int  # the most faces made up in one frame
    seconds: float  # wall time, end to end
    stage_seconds: dict[str, float]  # time spent in each stage (they overlap, so they sum to more)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def stage_ms(self) -> dict[str, float]:
        """Milliseconds per frame spent in each stage."""
        return {stage: 1000 * seconds / max(self.frames, 1) for stage, seconds in self.stage_seconds.items()}


def make_tracker(image_size: int):
    """The tracker videos use (faces.tracking): imported here so photos need none of it."""
    from faces.tracking import FaceTracker

    return FaceTracker(image_size, threads=1)


def quarter_turns(rotation: float) -> int:
    """The np.rot90 turns that bring a coded frame upright, from its display matrix's angle
    (counterclockwise degrees, as FFmpeg reports it; a phone held upright gives -90)."""
    return round(rotation / 90) % 4


def to_coded(alignment: Alignment, turns: int, width: int, height: int) -> Alignment:
    """An alignment found on the upright frame (np.rot90 of the coded one, ``turns`` times), in the
    pixels of the coded frame (``width`` x ``height``): the same crop, read where it is stored."""
    if not turns:
        return alignment
    point = {1: lambda x, y: (width - y, x), 2: lambda x, y: (width - x, height - y), 3: lambda x, y: (y, height - x)}
    vector = {1: lambda x, y: (-y, x), 2: lambda x, y: (-x, -y), 3: lambda x, y: (y, -x)}
    return Alignment(np.array(point[turns](*alignment.origin), np.float64),
                     np.array(vector[turns](*alignment.x_axis), np.float64),
                     np.array(vector[turns](*alignment.y_axis), np.float64), alignment.size)


def _reason(error: Exception) -> str:
    """FFmpeg's words without the errno and the path PyAV appends."""
    text = getattr(error, "strerror", None) or str(error)
    return re.sub(r"^\[Errno -?\d+\] ", "", text)


def _recorded_end_s(video) -> float | None:
    """Where the container says the video stream ends, in seconds (None: it does not say)."""
    if video.duration:
        return float((video.start_time or 0) + video.duration) * float(video.time_base)
    found = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", video.metadata.get("DURATION", ""))  # Matroska's tag
    if found:
        hours, minutes, seconds = found.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _source_items(source, video, audio, decode_audio: bool) -> Iterator[tuple[str, object]]:
    """The file in its stored order: ("video", VideoFrame) and ("audio", Packet or AudioFrame)."""
    streams = [video] + ([audio] if audio is not None else [])
    for packet in source.demux(streams):
        if packet.stream.index == video.index:
            for frame in packet.decode():
                yield "video", frame
        elif decode_audio:
            for frame in packet.decode():
                yield "audio", frame
        elif packet.size:  # the demuxer ends each stream with an empty packet
            yield "audio", packet


def _first_video_frame(path: Path, items: Iterator) -> tuple[list, av.VideoFrame]:
    """Read up to the first video frame (its size, rotation and colours set up the encoder)."""
    head = []
    for kind, item in items:
        head.append((kind, item))
        if kind == "video":
            return head, item
    raise VideoError(f"{path} has a video stream but no frames; nothing written for it")


def _pixel_format(encoder: str, source_format: str | None) -> str:
    """The source's pixel format where the encoder takes it (4:2:2, 10 bits...), else 4:2:0."""
    taken = {fmt.name for fmt in av.Codec(encoder, "w").video_formats or ()}
    return source_format if source_format in taken else "yuv420p"


def _encoded_size(path: Path, pixel_format: str, width: int, height: int) -> tuple[int, int]:
    """The size the encoder takes: a chroma plane at half width (or height) needs an even one, so an
    odd side gets one more pixel (a copy of its last column or row) and the log says so."""
    halved = av.VideoFormat(pixel_format, 2, 2)
    size = (width + (width % 2 if halved.chroma_width() < 2 else 0),
            height + (height % 2 if halved.chroma_height() < 2 else 0))
    if size != (width, height):
        log.warning("%s is %dx%d: %s video takes even sizes only, so the result is %dx%d (its last column or "
                    "row repeated once)", path, width, height, pixel_format, *size)
    return size


def _colour_tags(first: av.VideoFrame, pixel_format: str) -> dict[str, int]:
    """The colour tags that describe the result's pixels. The source's, except that RGB pixels
    encoded as YUV get the BT.709 matrix (the RGB "matrix" is the identity, which a player applies
    only to RGB/GBR pixels) in video range, which every player reads."""
    tags = {tag: getattr(first, tag) for tag in ("colorspace", "color_range", "color_primaries", "color_trc")}
    if tags["colorspace"] == RGB_MATRIX and not av.VideoFormat(pixel_format).is_rgb:
        tags.update(colorspace=BT709, color_range=VIDEO_RANGE)
        for tag in ("color_primaries", "color_trc"):
            tags[tag] = BT709 if tags[tag] == UNSPECIFIED else tags[tag]
    return tags


def _add_video(sink, muxer: str, path: Path, video, first: av.VideoFrame):
    """The output video stream: the source's coded size, time base, colours and rotation."""
    encoder, options = VIDEO_ENCODERS.get(muxer, X264)
    rate = video.average_rate or video.guessed_rate or Fraction(30)
    stream = sink.add_stream(encoder, rate=rate, options=dict(options))
    codec = stream.codec_context
    codec.pix_fmt = _pixel_format(encoder, video.codec_context.pix_fmt)
    codec.width, codec.height = _encoded_size(path, codec.pix_fmt, first.width, first.height)
    codec.time_base = stream.time_base = video.time_base  # the source's timestamps pass as they are
    for tag, value in _colour_tags(first, codec.pix_fmt).items():
        setattr(codec, tag, value)
    if video.sample_aspect_ratio:
        codec.sample_aspect_ratio = video.sample_aspect_ratio
    if first.rotation:
        stream.set_display_rotation(first.rotation)
    return stream


def _reencodes_audio(muxer: str, audio) -> bool:
    """Whether the container cannot carry the audio's codec as it is."""
    as_is = AUDIO_AS_IS[muxer]
    return audio is not None and as_is is not None and audio.codec_context.name not in as_is


def _add_audio(sink, muxer: str, audio, reencode: bool):
    """The output audio stream: the source's packets' own, or a new encoder's."""
    if audio is None:
        return None
    if not reencode:
        return sink.add_stream_from_template(audio)
    encoder, sample_format, rate = AUDIO_ENCODERS.get(muxer, AAC)
    stream = sink.add_stream(encoder, rate=rate or audio.rate)
    stream.codec_context.layout, stream.codec_context.format = audio.layout, sample_format
    return stream


class _Stopped(Exception):
    """Another stage failed: this one stops without a word (the failure is reported once)."""


_END = object()


class _Pipe:
    """A bounded queue between two stages that gives up as soon as any stage has failed."""

    def __init__(self, failed: threading.Event, size: int = QUEUE_FRAMES):
        self.failed, self.queue = failed, queue.Queue(size)

    def put(self, item) -> None:
        while not self.failed.is_set():
            try:
                return self.queue.put(item, timeout=0.1)
            except queue.Full:
                pass
        raise _Stopped

    def close(self) -> None:
        self.put(_END)

    def __iter__(self):
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.failed.is_set():
                    raise _Stopped from None
                continue
            if item is _END:
                return
            yield item


@dataclasses.dataclass
class _Decoded:
    pts: int | None
    time_s: float
    rgb: np.ndarray  # H x W x 3 uint8, as coded (not yet turned upright)


class _TimedRunner:
    """The model runner, counting the seconds spent in it (the model's share of the middle stage)."""

    def __init__(self, runner: Runner):
        self.runner, self.seconds = runner, 0.0

    def __call__(self, faces: np.ndarray, **inputs) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.runner(faces, **inputs)
        finally:
            self.seconds += time.perf_counter() - start


def _decode_stage(items: Iterator, outbox: _Pipe, seconds: dict, ending: dict) -> None:
    """Demux and decode; frames become RGB arrays. Records where the last frame ends (seconds)."""
    start, index = time.perf_counter(), 0
    for kind, item in items:
        if kind == "video":
            time_s = item.time if item.time is not None else index / 30  # no timestamp: count frames
            index += 1
            rgb = np.ascontiguousarray(item.to_ndarray(format="rgb24"))
            if not rgb.flags.writeable:
                rgb = rgb.copy()
            ending["end_s"] = time_s + float((item.duration or 0) * (item.time_base or 0))
            item = _Decoded(item.pts, time_s, rgb)
        seconds["decode"] += time.perf_counter() - start
        outbox.put((kind, item))
        start = time.perf_counter()
    outbox.close()


def _make_up_stage(inbox: _Pipe, outbox: _Pipe, runner: Runner, tracker, strength: float, regions: dict | None,
                   region_names: tuple[str, ...], turns: int, seconds: dict, progress: tqdm,
                   unmeshed: dict) -> tuple[int, int]:
    """Track the faces (on the upright frame), then make them up in place. Returns (frames, most faces);
    counts in ``unmeshed`` the faces and frames whose region maps were empty (no mesh)."""
    timed = _TimedRunner(runner)
    frames = most_faces = 0
    for kind, item in inbox:
        if kind == "video":
            start = time.perf_counter()
            upright = np.ascontiguousarray(np.rot90(item.rgb, turns)) if turns else item.rgb
            faces = tracker.update(upright, item.time_s)
            tracked, model_before = time.perf_counter(), timed.seconds
            height, width = item.rgb.shape[:2]
            alignments = [to_coded(face.alignment, turns, width, height) for face in faces]
            # the regions in the crop, which turning the frame does not move: from the upright frame's faces
            drawn = face_regions(regions, region_names, [(face.alignment, face.landmarks) for face in faces])
            if drawn.unmeshed:
                unmeshed["faces"] += drawn.unmeshed
                unmeshed["frames"] += 1
            most_faces = max(most_faces, make_up_frame(timed, item.rgb, alignments, strength, drawn.weights,
                                                       drawn.maps))
            model = timed.seconds - model_before
            seconds["track"] += tracked - start
            seconds["model"] += model
            seconds["composite"] += time.perf_counter() - tracked - model
            frames += 1
            progress.update()
        outbox.put((kind, item))
    outbox.close()
    return frames, most_faces


def _encode_stage(inbox: _Pipe, sink, video_out, audio_out, reencode_audio: bool, seconds: dict) -> None:
    """Back to the source's pixel format and colours, encode, and mux with the audio in file order."""
    codec = video_out.codec_context
    colours = {"dst_colorspace": codec.colorspace, "dst_color_range": codec.color_range}
    for kind, item in inbox:
        start = time.perf_counter()
        if kind == "video":
            rgb = item.rgb
            if rgb.shape[:2] != (codec.height, codec.width):  # an odd side made even (_encoded_size)
                rgb = np.pad(rgb, ((0, codec.height - rgb.shape[0]), (0, codec.width - rgb.shape[1]), (0, 0)),
                             mode="edge")
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=codec.pix_fmt, **colours)
            frame.pts, frame.time_base = item.pts, video_out.time_base
            sink.mux(video_out.encode(frame))
        elif reencode_audio:
            sink.mux(audio_out.encode(item))
        else:
            item.stream = audio_out
            sink.mux(item)
        seconds["encode"] += time.perf_counter() - start
    start = time.perf_counter()
    sink.mux(video_out.encode(None))
    if reencode_audio:
        sink.mux(audio_out.encode(None))
    seconds["encode"] += time.perf_counter() - start


def _in_thread(name: str, failed: threading.Event, errors: list, work, *args) -> threading.Thread:
    def run():
        try:
            work(*args)
        except _Stopped:
            pass
        except BaseException as error:  # handed to the main thread, which raises it
            errors.append(error)
            failed.set()

    thread = threading.Thread(target=run, name=f"video-{name}", daemon=True)
    thread.start()
    return thread


def _run_pipeline(items: Iterator, sink, video_out, audio_out, reencode_audio: bool, runner: Runner, tracker,
                  strength: float, regions: dict | None, region_names: tuple[str, ...], turns: int, progress: tqdm,
                  unmeshed: dict) -> tuple[int, int, dict, float]:
    """Decode and encode in their own threads, the faces in this one. Returns (frames, most faces,
    seconds per stage, where the last frame ends). Raises the first stage's failure."""
    failed, errors = threading.Event(), []
    seconds, ending = dict.fromkeys(STAGES, 0.0), {"end_s": 0.0}
    decoded, made_up = _Pipe(failed), _Pipe(failed)
    threads = [_in_thread("decode", failed, errors, _decode_stage, items, decoded, seconds, ending),
               _in_thread("encode", failed, errors, _encode_stage, made_up, sink, video_out, audio_out,
                          reencode_audio, seconds)]
    frames = most_faces = 0
    try:
        frames, most_faces = _make_up_stage(decoded, made_up, runner, tracker, strength, regions, region_names,
                                            turns, seconds, progress, unmeshed)
    except _Stopped:
        pass
    except BaseException:  # Ctrl-C included: stop the other stages before the temp file goes
        failed.set()
        raise
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return frames, most_faces, seconds, ending["end_s"]


def _check_complete(path: Path, video, frames: int, most_faces: int, end_s: float) -> None:
    """Refuse what the stages could not see as wrong: no frames, no face at all, a cut-off file."""
    if not frames:
        raise VideoError(f"{path} has a video stream but no frames; nothing written for it")
    recorded = _recorded_end_s(video)
    rate = float(video.average_rate or 30)
    if recorded is not None and end_s + TRUNCATION_FRAMES / rate < recorded:
        raise VideoError(f"{path} is cut short: its frames end at {end_s:.2f} s of the {recorded:.2f} s it "
                         "records (an interrupted copy or recording?); nothing written for it")
    if not most_faces:
        raise VideoError(f"no face found in any of the {frames} frames of {path}; nothing written for it")


def apply_to_video(runner: Runner, tracker, path: Path, out_dir: Path, strength: float,
                   progress: bool = True, regions: dict[str, float] | None = None,
                   region_names: tuple[str, ...] = ()) -> VideoResult:
    """Make up every tracked face of a video file; writes OUT/NAME_makeup.SUFFIX atomically.

    ``tracker``: faces.tracking.FaceTracker (or anything with its update()/reset()); reset here.
    ``regions``: a strength per region (faces.regions), each frame's from each face's mesh there.
    ``region_names``: the region maps the model reads (LoadedModel.region_inputs; empty: the face alone),
    each face's drawn in each frame from its mesh there (empty maps, counted in the log, without one).
    Raises VideoError (naming the file) before anything appears under the final name."""
    path, started = Path(path), time.perf_counter()
    target, muxer = output_path(path, out_dir), CONTAINERS[path.suffix.lower()]
    tracker.reset()
    unmeshed = {"faces": 0, "frames": 0}
    # One torch thread for the compositing: its two-thread pool spins against the decoder and the
    # encoder, and on a shared 2-core machine that made each face 20x slower.
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with av.open(str(path), metadata_errors="ignore") as source:
            if not source.streams.video:
                raise VideoError(f"{path} has no video stream (audio only?); nothing written for it")
            video = source.streams.video[0]
            video.codec_context.thread_type = "AUTO"
            audio = source.streams.audio[0] if source.streams.audio else None
            reencode_audio = _reencodes_audio(muxer, audio)
            items = _source_items(source, video, audio, reencode_audio)
            head, first = _first_video_frame(path, items)
            total = video.frames or None  # Matroska does not count its frames: the bar counts up
            with atomic_path(target) as tmp, av.open(str(tmp), "w", format=muxer) as sink, \
                    tqdm(total=total, desc=path.name, unit="frame", disable=not progress, leave=False) as bar:
                video_out = _add_video(sink, muxer, path, video, first)
                audio_out = _add_audio(sink, muxer, audio, reencode_audio)
                frames, most_faces, seconds, end_s = _run_pipeline(
                    itertools.chain(head, items), sink, video_out, audio_out, reencode_audio, runner, tracker,
                    strength, regions, region_names, quarter_turns(first.rotation), bar, unmeshed)
                _check_complete(path, video, frames, most_faces, end_s)
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: FFmpeg cannot read it as a video ({_reason(error)}); is it a complete, playable "
                         "file? Nothing written for it") from error
    finally:
        torch.set_num_threads(torch_threads)
    result = VideoResult(target, frames, most_faces, time.perf_counter() - started, seconds)
    if unmeshed["faces"]:
        log.info("%s: %d faces in %d of %d frames had no face mesh; the model read empty region maps for them (no "
                 "region known, as training gives such a face)", path, unmeshed["faces"], unmeshed["frames"], frames)
    log.info("%s: %d frames at %.1f frames/s; ms per frame: %s", path, frames, result.frames_per_s,
             ", ".join(f"{stage} {ms:.1f}" for stage, ms in result.stage_ms().items()))
    return result
