// The camera, live: each new camera frame is drawn once, onto an offscreen frame canvas; the
// faces are followed (tracking.mjs), each face's crop is warped out on a canvas (only its
// 256 x 256 pixels are read), run through the model, and the made-up face written onto an
// offscreen layer, only over its footprint. Then, in one step the browser cannot paint in the
// middle of (so the makeup never flickers off or lags its face), the frame goes onto the
// "before" canvas and the footprints onto the "after" one, a transparent layer over it. No
// full-frame getImageData, no full-frame loop in JavaScript. Frames come from the track itself where the
// browser can (MediaStreamTrackProcessor: each camera frame once, as soon as it is there, none
// twice), else from the video element (requestVideoFrameCallback, at the display's next frame).
import {composeOnto, faceTensor, runModel} from './makeup.mjs';

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

/** ``new CameraLoop({video, before, after, tracker, model, settings, onFrame}).start()``: makes up
 *  every frame it can until stop(); ``video`` plays the camera's stream. ``settings()`` gives
 *  {strength, regions} (regions: null for the tracked faces, or fixed ones, e.g. a box placed by
 *  hand); ``onFrame(frame)`` gets each frame's
 *  {index, time, faces, regions, ms: {draw, track, crop, model, compose, frame, wait}, detected}. */
export class CameraLoop {
  constructor({video, before, after, tracker, model, settings, onFrame}) {
    Object.assign(this, {video, tracker, model, settings, onFrame, running: false, index: 0, rate: new FrameRate()});
    this.before = before.getContext('2d');
    this.after = after.getContext('2d');
    this.frame = new OffscreenCanvas(1, 1).getContext('2d', {willReadFrequently: true});
    this.layer = new OffscreenCanvas(1, 1).getContext('2d', {willReadFrequently: true});
    this.onVideoFrame = this.onVideoFrame.bind(this);
  }

  start() {
    this.running = true;
    this.tracker.reset();
    const [track] = this.video.srcObject?.getVideoTracks?.() ?? [];
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
    return this.current ?? Promise.resolve();
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
          frame.close();
        }
      }
    } catch (error) {
      this.running = false;
      this.onError?.(error);
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
      this.running = false;
      this.onError?.(error);
      return;
    }
    this.next();
  }

  /** The frame and its made-up faces onto the page's canvases, with no await in between. */
  show(footprints) {
    const {width, height} = this.frame.canvas;
    this.before.drawImage(this.frame.canvas, 0, 0);
    this.after.clearRect(0, 0, width, height);
    for (const box of footprints) {
      if (!box) continue;
      const [x0, y0, x1, y1] = box;
      this.after.drawImage(this.layer.canvas, x0, y0, x1 - x0, y1 - y0, x0, y0, x1 - x0, y1 - y0);
    }
  }

  keep(making) {
    this.current = making.catch(() => {});  // stop() waits for it; the error itself goes to onError
    return making;
  }

  /** One frame (a VideoFrame or the video element) of the given size, taken at `time` seconds. */
  async makeUp(source, width, height, time) {
    const {frame, layer, model} = this;
    const started = performance.now();
    const waited = this.finished === undefined ? 0 : started - this.finished;  // for the camera, or behind it
    for (const context of [this.before, this.after, frame, layer]) {
      if (context.canvas.width !== width || context.canvas.height !== height) {
        Object.assign(context.canvas, {width, height});
      }
    }
    frame.drawImage(source, 0, 0, width, height);
    layer.clearRect(0, 0, width, height);
    const drawn = performance.now();
    const {strength, regions: fixed} = this.settings();
    const faces = fixed ? [] : await this.tracker.update(frame.canvas, time);
    const regions = fixed ?? faces.map((face) => face.region);
    const tracked = performance.now();
    let cropMs = 0, modelMs = 0, composeMs = 0;
    const footprints = [];
    for (const [k, region] of regions.entries()) {
      const cropping = performance.now();
      const face = faceTensor(frame.canvas, region, model.size);
      cropMs += performance.now() - cropping;
      const {madeUp, ms} = await runModel(model, face);
      const composing = performance.now();
      footprints.push(composeOnto(frame, layer, {region, face, madeUp}, model.size, strength, k > 0));
      modelMs += ms;
      composeMs += performance.now() - composing;
    }
    this.show(footprints);
    const finished = performance.now();
    this.finished = finished;
    this.rate.tick(finished);
    this.index += 1;
    this.onFrame?.({index: this.index, time, faces, regions, detected: !fixed && this.tracker.detected,
                    ms: {draw: drawn - started, track: tracked - drawn, crop: cropMs, model: modelMs, compose: composeMs,
                         frame: finished - started, wait: waited}});
  }
}
