// The script of the camera's Web Workers (workers.mjs starts them): each has its own runtime, on a
// core of its own where the machine has one, so the frame loop never waits for it. Its first message
// says which job it does, for the rest of its life:
//   'detect'  BlazeFace (faces.mjs detectFaces: the whole frame, and its tiles unless `tiles` is false)
//             on a frame's ImageBitmap -> {faces};
//   'makeUp'  the model on a frame's face regions (makeup.mjs makeUpFaces: crop, a region-input model's maps
//             from each region's shapes, model, residual weighted per face region, onto the footprint)
//             -> {patches (ImageData, transferred), ms}.
// Messages: {id, type: 'start', job, url, threads, regionNames} then {id, type: 'run', ...the job's input}; each is
// answered {id, ...reply} or {id, error}: any error fails the worker (the page then does the job itself).
import {detectFaces, loadDetector} from './faces.mjs';
import {loadModel, makeUpFaces} from './makeup.mjs';

const JOBS = {
  async detect({url}) {
    // A background job on one thread: the other cores are the frame loop's and the model's.
    const detector = await loadDetector(url, {threads: 1});
    threads = detector.network.threads;
    return async ({bitmap, tiles}) => ({reply: {faces: await detectFaces(detector, bitmap, {tiles})}, transfer: []});
  },

  async makeUp({url, threads: wanted, regionNames}) {
    const model = await loadModel(url, {threads: wanted, regionNames});
    threads = model.threads;
    const frame = new OffscreenCanvas(1, 1).getContext('2d', {willReadFrequently: true});
    return async ({bitmap, regions, makeup}) => {
      const copying = performance.now();
      const {width, height} = bitmap;
      if (frame.canvas.width !== width || frame.canvas.height !== height) Object.assign(frame.canvas, {width, height});
      frame.drawImage(bitmap, 0, 0);
      const copy = performance.now() - copying;
      const {patches, ms} = await makeUpFaces(frame, model, regions, makeup);
      return {reply: {patches, ms: {...ms, copy}}, transfer: patches.map((patch) => patch.pixels.data.buffer)};
    };
  },
};

let run = null;  // the job's function, once started
let threads = 0;  // the threads its runtime runs on

self.onmessage = async ({data: {id, type, ...input}}) => {
  try {
    if (type === 'start') {
      if (!JOBS[input.job]) throw new Error(`no such job: ${input.job}`);
      run = await JOBS[input.job](input);
      self.postMessage({id, threads});
    } else {
      const {reply, transfer} = await run(input);
      self.postMessage({id, ...reply}, transfer);
    }
  } catch (error) {
    self.postMessage({id, error: String(error?.message || error)});
  } finally {
    input.bitmap?.close();
  }
};
