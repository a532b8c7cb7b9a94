// The camera's work off the frame loop: the detector and the model, each in a Web Worker of its own
// (worker.mjs), so the periodic detection never stalls a frame and the model of one frame runs while
// the next is tracked. A worker that fails (its script, its network or a run) is reported once through
// `onFailure`, and its job is done in the page from then on: slower, never frozen.
import {makeUpFaces} from './makeup.mjs';

const JOB_NAMES = {detect: 'face detector', makeUp: 'model'};

export class WorkerFailed extends Error {}

/** ``new PageWorker('detect' | 'makeUp', url, {threads, regionNames})``: one worker, its network loaded from `url`
 *  (`regionNames`: the maps a region-input model reads, as the page checked them: makeup.mjs loadModel);
 *  ``run(input, transfer)`` -> the job's reply. */
export class PageWorker {
  constructor(job, url, {threads = 0, regionNames = null} = {}) {
    Object.assign(this, {job, calls: new Map(), nextId: 0, failure: null, runs: 0, onFailure: null});
    this.worker = new Worker(new URL('./worker.mjs', import.meta.url), {type: 'module', name: job});
    this.worker.onmessage = ({data}) => this.answer(data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.fail(event.message || 'its script could not be loaded');
    };
    this.worker.onmessageerror = () => this.fail('a reply could not be read');
    this.ready = this.call({type: 'start', job, url: new URL(url, location.href).href, threads, regionNames});
    this.ready.catch(() => {});  // reported by fail()
  }

  async run(input, transfer = []) {
    await this.ready;
    const reply = await this.call({type: 'run', ...input}, transfer);
    this.runs += 1;
    return reply;
  }

  call(message, transfer = []) {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, {resolve, reject});
      this.worker.postMessage({...message, id}, transfer);
    });
  }

  answer({id, error, ...reply}) {
    const call = this.calls.get(id);
    this.calls.delete(id);
    if (error !== undefined) this.fail(error);
    else call?.resolve(reply);
  }

  fail(why) {
    if (this.failure) return;
    this.failure = new WorkerFailed(`The ${JOB_NAMES[this.job]}'s worker failed (${why})`);
    this.worker.terminate();
    for (const {reject} of this.calls.values()) reject(this.failure);
    this.calls.clear();
    this.onFailure?.(this.failure);
  }
}

/** The tracker's `search` (tracking.mjs): BlazeFace (detectFaces, its `tiles` option passed on) on a
 *  snapshot of the frame (taken now, before the frame loop draws the next frame), in the worker. A failed
 *  worker finds nothing: whoever set its onFailure puts the detector back in the frame (the tracker
 *  without `search`). */
export function searchFor(worker) {
  return async (canvas, {tiles = true} = {}) => {
    const bitmap = await createImageBitmap(canvas);
    try {
      return (await worker.run({bitmap, tiles}, [bitmap])).faces;
    } catch (error) {
      if (error instanceof WorkerFailed) return [];
      throw error;
    }
  };
}

/** The camera's model stage: ``makeUp(canvas, regions, makeup)`` -> makeUpFaces' {patches, ms} (`makeup`: its
 *  {strength, regionStrengths, lookWeights}), in the worker while it works, else in the page. The frame the
 *  worker fails on is shown without makeup: the page's own onnxruntime must not run two sessions at once (its
 *  runs share one wasm stack), and the frame loop only waits for the model stage when it is in the page. */
export class ModelStage {
  constructor(model, worker = null) {
    Object.assign(this, {model, worker});
  }

  get where() {
    return this.worker && !this.worker.failure ? 'worker' : 'page';
  }

  async makeUp(canvas, regions, makeup) {
    if (this.where === 'worker') {
      const snapshot = createImageBitmap(canvas);
      try {
        const bitmap = await snapshot;
        return await this.worker.run({bitmap, regions, makeup}, [bitmap]);
      } catch (error) {
        if (!(error instanceof WorkerFailed)) throw error;
        return {patches: [], ms: {}};
      }
    }
    const frame = canvas.getContext('2d', {willReadFrequently: true});
    return makeUpFaces(frame, this.model, regions, makeup);
  }
}
