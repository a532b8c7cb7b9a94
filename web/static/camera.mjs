// The camera, live: each new camera frame is drawn once, onto one of two offscreen frame buffers; the
// faces are followed on it (tracking.mjs: the mesh in the page, the detector in a worker), then the
// model stage (workers.mjs ModelStage: crop, model, residual, in a worker) makes up its faces while the
// page already takes and tracks the next frame on the other buffer. A frame is shown once its own faces
// are made up, frames in order, in one step the browser cannot paint in the middle of (so the makeup
// never flickers off or lags its face): the frame onto the "before" canvas, the made-up footprints onto
// the "after" one, a transparent layer over it. At most one model job is out at a time, so a frame
// waits at most for the one before it. No full-frame getImageData, no full-frame loop in JavaScript.
// Frames come from the track itself where the browser can (MediaStreamTrackProcessor: each camera frame
// once, as soon as it is there, the newest when the page falls behind), else from the video element
// (requestVideoFrameCallback, at the display's next frame). A camera frame reaches its buffer through its
// own RGBA copy (FrameDrawer).

import {shapedRegion} from './regions.mjs';

const RATE_WINDOW_MS = 2000;  // frames per second over the last two seconds

/** Frames made up per second, over a sliding window of their finishing times. */
export class FrameRate {
  constructor(windowMs = RATE_WINDOW_MS) {
    this.windowMs = windowMs;
    this.times = [];
  }

  tick(now) {
    this.times.push(now);
    while (this.times.length > 2 && now - this.times[0] > this.windowMs) this.times.shift();
  }

  get perSecond() {
    const count = this.times.length;
    return count < 2 ? null : (1000 * (count - 1)) / (this.times[count - 1] - this.times[0]);
  }
}

/** Camera frames onto a 2D context: ``await drawer.draw(context, source, width, height)`` -> 'copy' or
 *  'drawImage', the way it went. A VideoFrame is converted to RGBA by its own copyTo (the browser's YUV
 *  conversion into plain memory), then put in one putImageData: 1.4 + 0.3 ms for a 1280x720 camera frame
 *  here, the very pixels drawImage gives, which takes 6-7 ms into a canvas the page reads back. drawImage
 *  where a copy cannot do (a rotated, flipped or scaled frame, the video element, a browser without RGBA
 *  copies: after one failed copy it is not tried again). */
export class FrameDrawer {
  async draw(context, source, width, height) {
    if (this.copies !== false && typeof VideoFrame === 'function' && source instanceof VideoFrame && !source.rotation &&
        !source.flip && source.visibleRect.width === width && source.visibleRect.height === height) {
      if (this.rgba?.width !== width || this.rgba?.height !== height) this.rgba = new ImageData(width, height);
      try {
        await source.copyTo(this.rgba.data, {format: 'RGBA', colorSpace: 'srgb'});
        context.putImageData(this.rgba, 0, 0);
        this.copies = true;
        return 'copy';
      } catch {
        this.copies ??= false;  // it never worked: not in this browser
      }
    }
    context.drawImage(source, 0, 0, width, height);
    return 'drawImage';
  }
}

/** ``new CameraLoop({video, before, after, tracker, maker, settings, onFrame}).start()``: makes up every
 *  frame it can until stop(); ``video`` plays the camera's stream, ``maker`` is a ModelStage (workers.mjs).
 *  ``settings()`` gives {regions, makeup} (regions: null for the tracked faces, each with its regions' shapes
 *  from its mesh, or fixed ones, e.g. a box placed by hand; makeup: makeUpFaces' {strength, regionStrengths,
 *  lookWeights}, read as each frame goes to the model, so a slider's change or another look shows on the next
 *  frame, the same model session taking another input value); ``onFrame(frame)`` gets each frame as it is
 *  shown: {index, time, drawnBy (FrameDrawer's answer), faces, regions, makeup (what it was made up with),
 *  detected, around, searches, merged, where, dropped, ms}; ms: draw, track, send (the snapshot for the model stage),
 *  queue (waiting for the frame before), copy, crop, maps (a region-input model's region maps, drawn from each
 *  face's shapes; 0 for another model), model, compose (the model stage's own), show, main (the page's own work
 *  on it), frame (taken to shown) and wait (the loop idle before it). */
export class CameraLoop {
  constructor({video, before, after, tracker, maker, settings, onFrame}) {
    Object.assign(this, {video, tracker, maker, settings, onFrame, running: false, index: 0, taken: 0,
                         rate: new FrameRate(), dropped: 0, shown: Promise.resolve()});
    this.before = before.getContext('2d');
    this.after = after.getContext('2d');
    // Two frame buffers: the model stage reads one while the next frame is drawn and tracked on the other.
    this.buffers = [0, 1].map(() => new OffscreenCanvas(1, 1).getContext('2d', {willReadFrequently: true}));
    this.drawer = new FrameDrawer();
    this.onVideoFrame = this.onVideoFrame.bind(this);
  }

  start() {
    this.running = true;
    this.tracker.reset();
    const [track] = this.video.srcObject?.getVideoTracks?.() ?? [];
    this.cameraFps = track?.getSettings?.().frameRate ?? null;  // for the frames the page never took
    this.source = track && typeof MediaStreamTrackProcessor === 'function' ? 'track' : 'video';
    if (this.source === 'track') {
      this.readFrames(new MediaStreamTrackProcessor({track, maxBufferSize: 1}).readable.getReader());
    } else {
      this.next();
    }
  }

  /** Stops after the frame in hand; resolves when that frame is on the canvases. */
  stop() {
    this.running = false;
    this.reader?.cancel().catch(() => {});
    return (this.current ?? Promise.resolve()).then(() => this.shown);
  }

  /** Each frame of the track, the newest one when the page falls behind (a buffer of one). */
  async readFrames(reader) {
    this.reader = reader;
    try {
      while (this.running) {
        const {value: frame, done} = await reader.read();
        if (done) break;
        try {
          if (this.running) await this.keep(this.makeUp(frame, frame.displayWidth, frame.displayHeight, frame.timestamp / 1e6));
        } finally {
          frame.close();  // drawn onto a buffer: the camera can have it back
        }
      }
    } catch (error) {
      this.failed(error);
    }
  }

  next() {
    if (!this.running) return;
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(this.onVideoFrame);
    else requestAnimationFrame((now) => this.onVideoFrame(now, null));
  }

  async onVideoFrame(now, metadata) {
    try {
      const {video} = this;
      if (this.running && video.readyState >= 2) {
        await this.keep(this.makeUp(video, video.videoWidth, video.videoHeight, (metadata?.captureTime ?? now) / 1000));
      }
    } catch (error) {
      this.failed(error);
      return;
    }
    this.next();
  }

  failed(error) {
    this.running = false;
    this.onError?.(error);
  }

  keep(making) {
    this.current = making.catch(() => {});  // stop() waits for it; the error itself goes to onError
    return making;
  }

  /** Camera frames between this one and the last the page took, by their timestamps. */
  countDropped(time) {
    if (this.cameraFps && this.lastTime !== undefined && time > this.lastTime) {
      this.dropped += Math.max(0, Math.round((time - this.lastTime) * this.cameraFps) - 1);
    }
    this.lastTime = time;
  }

  /** One frame (a VideoFrame or the video element) of the given size, taken at `time` seconds: drawn and
   *  tracked now, handed to the model stage once the frame before is shown, shown when made up. */
  async makeUp(source, width, height, time) {
    const started = performance.now();
    const ms = {wait: this.idleSince === undefined ? 0 : started - this.idleSince};
    this.countDropped(time);
    const buffer = this.buffers[this.taken++ % 2];
    for (const context of [this.before, this.after, buffer]) {
      if (context.canvas.width !== width || context.canvas.height !== height) {
        Object.assign(context.canvas, {width, height});
      }
    }
    const drawnBy = await this.drawer.draw(buffer, source, width, height);
    const drawn = performance.now();
    const fixed = this.settings().regions;
    const faces = fixed ? [] : await this.tracker.update(buffer.canvas, time);
    const regions = fixed ?? faces.map((face) => shapedRegion(face.region, face.landmarks));
    const tracked = performance.now();
    const {detected = false, around = false, searches = 0, merged = false} = fixed ? {} : this.tracker;
    await this.shown;  // one model job out at a time: the frame before is on screen first
    const queued = performance.now();
    // Read now, not with the regions: a look picked while the frame before was shown is this frame's.
    const {makeup} = this.settings();
    const making = regions.length ? this.maker.makeUp(buffer.canvas, regions, makeup) :
      Promise.resolve({patches: [], ms: {}});
    const sent = performance.now();
    Object.assign(ms, {draw: drawn - started, track: tracked - drawn, queue: queued - tracked, send: sent - queued});
    const frame = {time, drawnBy, faces, regions, makeup, detected, around, searches, merged,
                   where: regions.length ? this.maker.where : null};
    this.shown = making.then((made) => this.show(buffer, made, frame, ms, started)).catch((error) => this.failed(error));
    // In the page, the model stage is this frame's work: the next frame's mesh must not run beside it
    // (one onnxruntime, one wasm stack). In its worker it runs while the next frame is taken.
    if (frame.where === 'page') await this.shown;
    this.idleSince = performance.now();
  }

  /** The frame and its made-up faces onto the page's canvases, with no await in between. */
  show(buffer, {patches, ms: stage}, frame, ms, started) {
    const showing = performance.now();
    const {width, height} = buffer.canvas;
    this.before.drawImage(buffer.canvas, 0, 0);
    this.after.clearRect(0, 0, width, height);
    for (const {box: [x0, y0], pixels} of patches) this.after.putImageData(pixels, x0, y0);
    const finished = performance.now();
    this.rate.tick(finished);
    this.index += 1;
    const show = finished - showing;
    Object.assign(ms, {copy: 0, crop: 0, maps: 0, model: 0, compose: 0, ...stage, show, frame: finished - started});
    // The page's own work on this frame: the model stage too where it ran in the page (its crop began
    // inside `send` then, so that is not counted twice).
    ms.main = ms.draw + ms.track + show + (frame.where === 'page' ? ms.crop + ms.maps + ms.model + ms.compose : ms.send);
    this.onFrame?.({...frame, index: this.index, dropped: this.dropped, ms});
  }
}
