// Follow faces through the camera's frames: faces/tracking.py in JavaScript, the same chain and
// constants. BlazeFace finds a face; the mesh runs on a square around it, then, frame after
// frame, on the square its own previous landmarks give; the detector runs again only when a
// track's face flag drops, when there is no track, or every `detectEvery` frames to pick up new
// faces. Each track's crop is the FFHQ alignment of its mesh, smoothed by a One Euro filter
// (Casiez, Roussel and Vogel, CHI 2012) on its centre, log-size and angle.
import {alignFace, boxIou, detectAround, detectFaces} from './faces.mjs';
import {MIN_PRESENCE, alignMesh, regionFromFace, regionFromLandmarks, runMesh} from './mesh.mjs';

// (min_cutoff Hz, beta) per alignment parameter; speeds in face sizes per second (centre),
// log-size per second and radians per second.
export const SMOOTHING = {centre: [0.5, 30.0], size: [0.5, 20.0], angle: [0.5, 20.0]};
export const DERIVATIVE_CUTOFF = 2.0;  // Hz, for the speed estimate
// A new face is meshed 3 times: the second pass halves the landmark error; the third runs on the region
// the track then holds, so the first frame's crop is measured as the next frames' are (faces/tracking.py).
export const MESH_PASSES = 3;
export const FALLBACK_DT = 1 / 30;     // a frame whose timestamp does not advance
// The mesh's next region stays put until the face leaves it by this much (a fraction of the side,
// a log-size change, degrees): a still face's mesh sees the same crop every frame.
export const REGION_HOLD = {shift: 0.03, scale: 0.05, degrees: 3.0};
export const MATCH_IOU = 0.3;          // a detection overlapping a track this much is that track's face
export const DUPLICATE_IOU = 0.5;      // two tracks on one face: the younger goes
export const DETECT_EVERY = 30;
export const MAX_FACES = 4;
// With the detector off the frame loop, a mesh that misses (a track's, or a new face's first on a detection
// a few frames old) looks once more on a square this much larger: the face has moved on since.
const STALE_WIDEN = 2;

const alpha = (dt, cutoff) => 1 / (1 + 1 / (2 * Math.PI * cutoff * dt));
// An angle difference into [-pi, pi) (Python's % is never negative; JavaScript's can be).
const wrapAngle = (angle) => ((((angle + Math.PI) % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI)) - Math.PI;

/** Casiez et al.'s One Euro filter for a vector: a low-pass whose cutoff rises with speed. */
export class OneEuroFilter {
  constructor(minCutoff, beta, derivativeCutoff = DERIVATIVE_CUTOFF) {
    Object.assign(this, {minCutoff, beta, derivativeCutoff, value: null, speed: 0, time: 0});
  }

  filter(value, time, speedScale = 1) {
    if (this.value === null) {
      Object.assign(this, {value: [...value], time});
      return this.value;
    }
    const dt = time > this.time ? time - this.time : FALLBACK_DT;
    const speed = Math.hypot(...value.map((v, k) => v - this.value[k])) / dt / speedScale;
    this.speed += alpha(dt, this.derivativeCutoff) * (speed - this.speed);
    const weight = alpha(dt, this.minCutoff + this.beta * this.speed);
    this.value = this.value.map((v, k) => v + weight * (value[k] - v));
    this.time = time;
    return this.value;
  }
}

// A region {origin, xAxis, yAxis} (the page's crops, faces.Alignment's fields) from centre, side, angle.
export function regionFromParams([cx, cy], side, angle) {
  const x = [Math.cos(angle) * side / 2, Math.sin(angle) * side / 2], y = [-x[1], x[0]];
  return {origin: [cx - x[0] - y[0], cy - x[1] - y[1]], xAxis: [2 * x[0], 2 * x[1]], yAxis: [2 * y[0], 2 * y[1]]};
}

export function regionParams({origin, xAxis, yAxis}) {
  return {centre: [origin[0] + (xAxis[0] + yAxis[0]) / 2, origin[1] + (xAxis[1] + yAxis[1]) / 2],
          side: Math.hypot(...xAxis), angle: Math.atan2(xAxis[1], xAxis[0])};
}

/** One Euro filters on a crop's centre, log-size and angle. */
class AlignmentFilter {
  constructor(constants = SMOOTHING) {
    [this.centre, this.size, this.angle] = ['centre', 'size', 'angle'].map((key) => new OneEuroFilter(...constants[key]));
  }

  filter(region, time) {
    const {centre, side, angle} = regionParams(region);
    const smoothCentre = this.centre.filter(centre, time, side);
    const [logSide] = this.size.filter([Math.log(side)], time);
    const unwrapped = this.angle.value === null ? angle : this.angle.value[0] + wrapAngle(angle - this.angle.value[0]);
    const [smoothAngle] = this.angle.filter([unwrapped], time);
    return regionFromParams(smoothCentre, Math.exp(logSide), smoothAngle);
  }
}

/** One followed face: its last mesh, the region the next frame's mesh runs on, its filter. */
class Track {
  constructor(trackId, smoothing) {
    Object.assign(this, {trackId, filter: smoothing ? new AlignmentFilter() : null, face: null, region: null});
  }

  follow(points, presence, time) {
    let region = alignMesh(points);
    if (this.filter) region = this.filter.filter(region, time);
    this.face = {trackId: this.trackId, region, landmarks: points, confidence: presence};
    const next = regionFromLandmarks(points);
    if (this.region === null || moved(this.region, next)) this.region = next;
  }

  box() {
    return landmarkBox(this.face.landmarks);
  }
}

function landmarkBox(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

/** Whether the face has left the old region by more than REGION_HOLD allows. */
function moved(old, next) {
  const shift = Math.hypot(next.centre[0] - old.centre[0], next.centre[1] - old.centre[1]) / old.side;
  const turn = Math.abs(wrapAngle(next.angle - old.angle));
  return shift > REGION_HOLD.shift || Math.abs(Math.log(next.side / old.side)) > REGION_HOLD.scale ||
         turn > (REGION_HOLD.degrees * Math.PI) / 180;
}

const maxIou = (box, tracks) => Math.max(0, ...tracks.map((track) => boxIou(box, track.box())));

/** Detect once, then follow each face frame to frame; `update(canvas, seconds)` -> faces, oldest track first:
 *  {trackId, region (the model's crop, smoothed), landmarks (468 [x, y]), confidence}.
 *  `search` ((canvas, {tiles}) -> Promise of detectFaces' faces, e.g. a Web Worker's): the detector runs off the frame,
 *  and its faces join the tracks at the first frame after it answers; without it the detector runs in the
 *  frame that needs it, as faces.tracking does. */
export class FaceTracker {
  constructor({detector, mesh, detectEvery = DETECT_EVERY, maxFaces = MAX_FACES, smoothing = true, search = null}) {
    Object.assign(this, {detector, mesh, detectEvery, maxFaces, smoothing, search});
    this.reset();
  }

  reset() {
    // detected: this frame ran the detector itself; searches: detector runs handed to `search`;
    // merged: this frame took in a search's faces. lost: tracks lost since the last detection.
    Object.assign(this, {tracks: [], frameIndex: -1, nextId: 0, detected: false, searches: 0, merged: false,
                         lost: [], found: null, seen: null, searching: null});
  }

  async update(canvas, time) {
    this.frameIndex += 1;
    this.rejected = [];  // this update's detections the mesh found no face in (faces.tracking's `rejected`)
    const lost = [];
    for (const track of this.tracks) if (!await this.follow(track, canvas, time)) lost.push(track);
    this.tracks = this.withoutDuplicates(this.tracks.filter((track) => !lost.includes(track)));
    this.lost.push(...lost);
    const due = this.frameIndex % this.detectEvery === 0 && this.tracks.length < this.maxFaces;
    const wanted = Boolean(lost.length || !this.tracks.length || due);
    this.detected = wanted && !this.search;  // for the page's timing line
    if (this.detected) await this.detect(await detectFaces(this.detector, canvas), canvas, time);
    if (this.search) await this.searchAside(canvas, time, Boolean(lost.length || due), Boolean(lost.length));
    return this.tracks.map((track) => track.face);
  }

  /** Takes in the faces of the search that has answered, then starts the next one if wanted (one at a
   *  time): the frame never waits for the detector. A search while every face is followed (the periodic
   *  one, for new faces) is the whole frame's pass alone: the tiles' three more passes, on a core the frame
   *  loop shares, doubled the model's time for the ~4 frames it ran (faces that small, a tenth of the
   *  frame, are found when nothing is followed or a track is lost: `lost`, this frame's, or one lost since
   *  the last search answered). */
  async searchAside(canvas, time, due, lost = false) {
    const {found, seen} = this;
    this.merged = found !== null;
    Object.assign(this, {found: null, seen: null});
    if (found) await this.detect(found, canvas, time, true, seen);
    if (found?.length && !this.tracks.length) {
      // Faces found, none followed: they moved on while the search ran (a slow machine, a fast face), and
      // an old box would miss them again. This frame looks itself, around where they were (one detector
      // pass a face, not the whole frame's four: the frame waits for it); what it misses, the next search
      // (started below, there being no track) finds.
      this.detected = true;
      await this.detect(await detectAround(this.detector, canvas, found.map((face) => face.box)), canvas, time);
    }
    if ((due || !this.tracks.length) && !this.searching) {
      this.searches += 1;
      const tiles = lost || this.lost.length > 0 || !this.tracks.length;  // a face to find again, or none followed
      const searching = this.search(canvas, {tiles}).then((faces) => faces, () => []);
      const boxes = new Map(this.tracks.map((track) => [track, track.box()]));  // this frame's, for its faces
      this.searching = searching;
      searching.then((faces) => {  // unless reset since
        if (this.searching === searching) Object.assign(this, {found: faces, seen: boxes, searching: null});
      });
    }
  }

  async follow(track, canvas, time) {
    const [x, y] = track.region.centre;
    if (!(x >= 0 && x < canvas.width && y >= 0 && y < canvas.height)) return false;
    let {points, presence} = await runMesh(this.mesh, canvas, track.region);
    if (presence < MIN_PRESENCE && this.search) {
      // Lost between two frames (a fast face, a frame skipped), and the detector's answer would come frames
      // later: the mesh looks once more now, on a square STALE_WIDEN larger around where the face was.
      ({points, presence} = await runMesh(this.mesh, canvas, {...track.region, side: STALE_WIDEN * track.region.side}));
    }
    if (presence < MIN_PRESENCE) return false;
    track.follow(points, presence, time);
    return true;
  }

  withoutDuplicates(tracks) {
    const kept = [];
    for (const track of tracks) if (!kept.length || maxIou(track.box(), kept) <= DUPLICATE_IOU) kept.push(track);
    return kept;
  }

  /** New tracks from detected faces that no track has. `stale`: the faces are a few frames old (searchAside),
   *  so a face a track has moved on to is known by its mesh here, not by the old box; `seen`: the tracks'
   *  boxes on the frame the faces were found on (Map track -> box). */
  async detect(found, canvas, time, stale = false, seen = null) {
    const lost = this.lost;
    this.lost = [];
    for (const face of found) {
      if (this.tracks.length >= this.maxFaces) return;
      if (this.tracks.length && maxIou(face.box, this.tracks) > MATCH_IOU) continue;
      // A search's face is matched to the tracks as they were on its own frame (`seen`): a followed face
      // has moved off its old box since, and a new face's three mesh passes would only find the track's.
      if (seen && this.tracks.some((track) => seen.has(track) && boxIou(face.box, seen.get(track)) > MATCH_IOU)) continue;
      const {points, presence, region} = await this.firstMesh(canvas, face, stale);
      if (presence < MIN_PRESENCE) {
        this.rejected.push(face);
        continue;
      }
      if (stale && this.tracks.length && maxIou(landmarkBox(points), this.tracks) > DUPLICATE_IOU) continue;
      const track = this.trackFor(face.box, lost);
      track.region = region;
      track.follow(points, presence, time);
      this.tracks.push(track);
    }
  }

  /** A new face's mesh: on the detection's square, then MESH_PASSES - 1 times on the square of the mesh
   *  before; {points, presence, region (of the last pass)}. */
  async firstMesh(canvas, face, stale = false) {
    let region = regionFromFace(face);
    let {points, presence} = await runMesh(this.mesh, canvas, region);
    if (stale && presence < MIN_PRESENCE) {
      region = {...region, side: STALE_WIDEN * region.side};
      ({points, presence} = await runMesh(this.mesh, canvas, region));
    }
    for (let pass = 1; pass < MESH_PASSES && presence >= MIN_PRESENCE; pass++) {
      region = regionFromLandmarks(points);
      ({points, presence} = await runMesh(this.mesh, canvas, region));
    }
    return {points, presence, region};
  }

  /** The lost track this detection finds again (same id, fresh filter), or a new one. */
  trackFor(box, lost) {
    const old = lost.find((track) => boxIou(box, track.box()) > MATCH_IOU);
    if (old) {
      lost.splice(lost.indexOf(old), 1);
      return new Track(old.trackId, this.smoothing);
    }
    this.nextId += 1;
    return new Track(this.nextId - 1, this.smoothing);
  }
}

export const STILL_MAX_FACES = 100;  // a photo: every face the detector finds, not the few a live view follows

/** A still photo, as faces.tracking.still_faces: one frame through the camera's chain, unsmoothed
 *  (`tracker`: a FaceTracker with smoothing false, reset here); faces the mesh rejects follow,
 *  aligned from the detector's keypoints. [{region, by: 'mesh' | 'detector'}]. */
export async function stillFaces(tracker, canvas) {
  tracker.reset();
  const meshed = (await tracker.update(canvas, 0)).map((face) => ({region: face.region, by: 'mesh'}));
  return [...meshed, ...tracker.rejected.map((face) => ({region: alignFace(face), by: 'detector'}))];
}
