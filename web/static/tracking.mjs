// Follow faces through the camera's frames: faces/tracking.py in JavaScript. The decisions are
// tracking_step.mjs's pure step (faces.tracking_step's, on the numbers of faces/tracking.json, which the
// server serves as tracking.json); this file runs the detector and the mesh it asks for. BlazeFace finds a
// face; the mesh runs on a square around it, then, frame after frame, on the square its own previous
// landmarks give; the detector runs again only when a track's face flag drops, when there is no track, or
// every `detectEvery` frames to pick up new faces. Each track's crop is the FFHQ alignment of its mesh,
// smoothed by a One Euro filter (Casiez, Roussel and Vogel, CHI 2012) on its centre, log-size and angle.
import PARAMS from './tracking.json' with {type: 'json'};
import {alignFace, detectAround, detectFaces} from './faces.mjs';
import {runMesh} from './mesh.mjs';
import {regionShapes, shapedRegion} from './regions.mjs';
import {newState, step} from './tracking_step.mjs';

export {PARAMS};
export const SMOOTHING = PARAMS.smoothing;
export const DERIVATIVE_CUTOFF = PARAMS.derivative_cutoff;
export const FALLBACK_DT = 1 / PARAMS.fallback_fps;
export const MESH_PASSES = PARAMS.mesh_passes;
export const REGION_HOLD = PARAMS.region_hold;
export const MATCH_IOU = PARAMS.match_iou;
export const DUPLICATE_IOU = PARAMS.duplicate_iou;
export const DETECT_EVERY = PARAMS.detect_every;
export const MAX_FACES = PARAMS.max_faces;
export const STILL_MAX_FACES = PARAMS.still_max_faces;  // a photo: every face the detector finds

/** Detect once, then follow each face frame to frame; `update(canvas, seconds)` -> faces, oldest track first:
 *  {trackId, region (the model's crop, smoothed), landmarks (468 [x, y]), confidence}.
 *  `search` ((canvas, {tiles}) -> Promise of detectFaces' faces, e.g. a Web Worker's): the detector runs off the
 *  frame, and its faces join the tracks at the first frame after it answers; without it the detector runs in
 *  the frame that needs it, as faces.tracking does. The scheduling is this class's; every decision is the step's. */
export class FaceTracker {
  constructor({detector, mesh, detectEvery = DETECT_EVERY, maxFaces = MAX_FACES, smoothing = true, search = null,
               params = PARAMS}) {
    Object.assign(this, {detector, mesh, detectEvery, maxFaces, smoothing, search, params});
    this.reset();
  }

  reset() {
    // detected: the last frame ran the whole frame's detector itself; around: only around faces lost or found
    // stale; merged: it took in a search's faces; found: the answer of the search in flight (`searching`), once
    // it has come, for the next frame.
    this.state = newState({detectEvery: this.detectEvery, maxFaces: this.maxFaces, smoothing: this.smoothing});
    Object.assign(this, {rejected: [], detected: false, around: false, merged: false, found: null, searching: null});
  }

  get tracks() {
    return this.state.tracks;
  }

  get searches() {  // detector runs handed to `search`
    return this.state.searches;
  }

  async update(canvas, time) {
    const found = this.found;
    this.found = null;
    // aside: the page sets `search` once its worker runs, and takes it away if the worker fails
    const frame = {width: canvas.width, height: canvas.height, time, found, aside: Boolean(this.search)};
    const steps = step(this.params, this.state, frame);
    let next = steps.next();
    while (!next.done) next = steps.next(await this.run(next.value, canvas));
    const {state, faces, rejected, search, detected, around, merged} = next.value;
    // rejected: this update's detections the mesh found no face in (faces.tracking's `rejected`)
    Object.assign(this, {state, rejected, detected, around, merged});
    if (search) this.startSearch(canvas, search);
    return faces;
  }

  run(request, canvas) {
    if (request.run === 'mesh') return runMesh(this.mesh, canvas, request.region);
    if (request.run === 'detect') return detectFaces(this.detector, canvas);
    if (request.run === 'detect_around') return detectAround(this.detector, canvas, request.boxes, request.reach);
    throw new Error(`the tracker's step asked for ${request.run}, which tracking.mjs does not run`);
  }

  /** The search the step asked for, on this frame (the worker snapshots it at once); its faces go to the first
   *  frame after it answers (a failed search found nothing), unless the tracker was reset since. */
  startSearch(canvas, {tiles}) {
    const searching = this.search(canvas, {tiles}).then((faces) => faces, () => []);
    this.searching = searching;
    searching.then((faces) => {
      if (this.searching === searching) Object.assign(this, {found: faces, searching: null});
    });
  }
}

/** A still photo, as faces.tracking.still_faces: one frame through the camera's chain, unsmoothed
 *  (`tracker`: a FaceTracker with smoothing false, reset here); faces the mesh rejects follow,
 *  aligned from the detector's keypoints. [{region, by: 'mesh' | 'detector'}]; a meshed face's region
 *  carries its regions' shapes (regions.mjs shapedRegion). */
export async function stillFaces(tracker, canvas) {
  tracker.reset();
  const meshed = (await tracker.update(canvas, 0)).map((face) => ({region: shapedRegion(face.region, face.landmarks),
                                                                  by: 'mesh'}));
  return [...meshed, ...tracker.rejected.map((face) => ({region: alignFace(face), by: 'detector'}))];
}

/** The region shapes of a crop no mesh placed (the whole photo as the face crop, a box placed by hand), for a
 *  region-input model: the largest face the mesh finds on the model's crop itself (`face`: its 3 x size x size
 *  planar floats, as their 8-bit pixels), its mesh in fractions of the crop's side, as `apply --aligned` places an
 *  aligned crop's (and training its images'); null where the mesh finds no face there. `tracker`: stillFaces'. */
export async function cropShapes(tracker, face, size) {
  const plane = size * size, pixels = new ImageData(size, size);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) pixels.data[4 * i + c] = Math.round(face[c * plane + i] * 255);
    pixels.data[4 * i + 3] = 255;
  }
  const canvas = new OffscreenCanvas(size, size);
  canvas.getContext('2d').putImageData(pixels, 0, 0);
  tracker.reset();
  const faces = await tracker.update(canvas, 0);
  if (!faces.length) return null;
  const side = (found) => Math.hypot(...found.region.xAxis);
  const largest = faces.reduce((best, found) => (side(found) > side(best) ? found : best));
  return regionShapes(largest.landmarks.map(([x, y]) => [x / size, y / size]));
}
