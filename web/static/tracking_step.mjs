// The face tracker's decisions, one pure step a frame: faces/tracking_step.py in JavaScript, the same
// decisions in the same order, its numbers from the same file (faces/tracking.json, served as
// tracking.json; tracking.mjs hands them in). `step(params, state, frame)` is a generator: it yields what
// to run ({run: 'mesh', region}, {run: 'detect'}, {run: 'detect_around', boxes, reach}), is sent each answer
// (runMesh's {points, presence}, detectFaces' faces) and returns {state, faces, rejected, search, detected,
// around, merged}; it copies the state it is given and runs nothing itself. tracking.mjs runs its requests;
// the traces under tests/traces/tracking/ are replayed by both languages (web/test/tracking.test.mjs, pytest).
import {boxIou} from './faces.mjs';
import {MIN_PRESENCE, alignMesh, regionFromFace, regionFromLandmarks} from './mesh.mjs';

const alpha = (dt, cutoff) => 1 / (1 + 1 / (2 * Math.PI * cutoff * dt));
// An angle difference into [-pi, pi) (Python's % is never negative; JavaScript's can be).
const wrapAngle = (angle) => ((((angle + Math.PI) % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI)) - Math.PI;

/** Casiez et al.'s One Euro filter for a vector, on plain data ({value, speed, time}): a low-pass whose cutoff
 *  rises with speed. `constants`: [minCutoff, beta]. Returns the filtered value (the filter is updated). */
export function oneEuro(filter, [minCutoff, beta], params, value, time, speedScale = 1) {
  if (filter.value === null) {
    Object.assign(filter, {value: [...value], time});
    return filter.value;
  }
  const dt = time > filter.time ? time - filter.time : 1 / params.fallback_fps;
  const speed = Math.hypot(...value.map((v, k) => v - filter.value[k])) / dt / speedScale;
  filter.speed += alpha(dt, params.derivative_cutoff) * (speed - filter.speed);
  const weight = alpha(dt, minCutoff + beta * filter.speed);
  filter.value = filter.value.map((v, k) => v + weight * (value[k] - v));
  filter.time = time;
  return filter.value;
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

const newFilters = () => ({centre: {value: null, speed: 0, time: 0}, size: {value: null, speed: 0, time: 0},
                           angle: {value: null, speed: 0, time: 0}});

/** One Euro filters on a crop's centre, log-size and angle. */
function smooth(params, filters, region, time) {
  const {centre, side, angle} = regionParams(region);
  const smoothCentre = oneEuro(filters.centre, params.smoothing.centre, params, centre, time, side);
  const [logSide] = oneEuro(filters.size, params.smoothing.size, params, [Math.log(side)], time);
  const last = filters.angle.value;
  const unwrapped = last === null ? angle : last[0] + wrapAngle(angle - last[0]);
  const [smoothAngle] = oneEuro(filters.angle, params.smoothing.angle, params, [unwrapped], time);
  return regionFromParams(smoothCentre, Math.exp(logSide), smoothAngle);
}

/** The state a tracker starts from (faces.tracking_step.TrackerState). */
export function newState({detectEvery, maxFaces, smoothing = true}) {
  return {detectEvery, maxFaces, smoothing, tracks: [], frameIndex: -1, nextId: 0, lost: [], searches: 0,
          searching: false, seen: null};
}

export function landmarkBox(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

const trackBox = (track) => landmarkBox(track.face.landmarks);
const maxIou = (box, boxes) => Math.max(0, ...boxes.map((other) => boxIou(box, other)));

/** How far the next region's centre is from the old one's, in the old one's sides. */
const shiftOf = (old, next) => Math.hypot(next.centre[0] - old.centre[0], next.centre[1] - old.centre[1]) / old.side;

/** Whether the face has left the old region by more than region_hold allows. */
export function moved(params, old, next) {
  const hold = params.region_hold;
  const shift = shiftOf(old, next);
  const turn = Math.abs(wrapAngle(next.angle - old.angle));
  return shift > hold.shift || Math.abs(Math.log(next.side / old.side)) > hold.scale ||
         turn > (hold.degrees * Math.PI) / 180;
}

/** One frame's decisions: `frame` {width, height, time, found (the faces of a search that answered since the last
 *  frame, or null), aside (the detector runs aside, in a worker, its faces coming as `found`; else in the frame)}. */
export function* step(params, given, {width, height, time, found = null, aside = false}) {
  const state = structuredClone(given);
  state.frameIndex += 1;
  const rejected = [], lost = [];
  for (const track of state.tracks) if (!(yield* follow(params, track, width, height, time, aside))) lost.push(track);
  state.tracks = withoutDuplicates(params, state.tracks.filter((track) => !lost.includes(track)));
  state.lost.push(...lost);
  let missing = lost.length;
  const looked = aside ? lost.filter((track) => inFrame(track.region, width, height)) : [];
  let around = looked.length > 0;
  if (around) {
    // Lost even on the wider square (a loaded machine's frames far apart), and the search would answer
    // frames later, the frames bare till then: this frame looks itself around where each face was. A face
    // found there is the lost track's whose square holds it (its id kept); the others stay lost.
    const faces = yield {run: 'detect_around', boxes: looked.map(trackBox), reach: params.around_reach};
    state.lost = yield* detect(params, state, faces, time, rejected, false, null, params.around_reach);
    missing = lost.filter((track) => state.lost.includes(track)).length;
  }
  const due = state.frameIndex % state.detectEvery === 0 && state.tracks.length < state.maxFaces;
  const detected = Boolean(missing || !state.tracks.length || due) && !aside;
  if (detected) yield* detect(params, state, yield {run: 'detect'}, time, rejected);
  let merged = false, search = null;
  if (aside) {
    let stale;
    ({around: stale, merged, search} = yield* searchAside(params, state, found, time, Boolean(missing || due),
                                                          Boolean(missing), rejected));
    around ||= stale;
  }
  return {state, faces: state.tracks.map((track) => track.face), rejected, search, detected, around, merged};
}

const inFrame = ({centre: [x, y]}, width, height) => x >= 0 && x < width && y >= 0 && y < height;

/** Mesh the track's predicted region; false when the face is gone from it. */
function* follow(params, track, width, height, time, aside) {
  if (!inFrame(track.region, width, height)) return false;
  let {points, presence} = yield {run: 'mesh', region: track.region};
  if (presence < MIN_PRESENCE && aside) {
    // Lost between two frames (a fast face, a frame skipped), and the detector's answer would come frames
    // later: the mesh looks once more now, on a wider square around where the face was.
    ({points, presence} = yield {run: 'mesh', region: {...track.region, side: params.stale_widen * track.region.side}});
  }
  if (presence < MIN_PRESENCE) return false;
  const caught = regionFromLandmarks(points);
  if (shiftOf(track.region, caught) > params.catch_up) {
    // The face moved far since the frame before (a loaded machine's frames far apart): the mesh on a crop
    // it half left puts its landmarks between the two. Once more, on the square they give.
    const again = yield {run: 'mesh', region: caught};
    if (again.presence >= MIN_PRESENCE) {
      ({points, presence} = again);
      track.region = caught;
    }
  }
  takeMesh(params, track, points, presence, time);
  return true;
}

/** The track's face from this mesh (smoothed), and its next region unless the face is still inside it. */
function takeMesh(params, track, points, presence, time) {
  let region = alignMesh(points);
  if (track.filters) region = smooth(params, track.filters, region, time);
  track.face = {trackId: track.trackId, region, landmarks: points.map(([x, y]) => [x, y]), confidence: presence};
  const next = regionFromLandmarks(points);
  if (track.region === null || moved(params, track.region, next)) track.region = next;
}

function withoutDuplicates(params, tracks) {
  const kept = [];  // oldest first, so the younger of two on one face goes
  for (const track of tracks) if (maxIou(trackBox(track), kept.map(trackBox)) <= params.duplicate_iou) kept.push(track);
  return kept;
}

/** New tracks from detected faces that no track has; a lost track's face found again keeps its id. `stale`: the
 *  faces are a search's, a few frames old, so a face a track has moved on to is known by its mesh here, not by
 *  the old box; `seen`: the tracks' boxes on the frame the faces were found on (by track id); `reach`: the faces
 *  are a look around lost tracks' boxes (see trackFor). Returns the lost tracks no face found again (state.lost
 *  is emptied). */
function* detect(params, state, faces, time, rejected, stale = false, seen = null, reach = null) {
  const lost = state.lost;
  state.lost = [];
  for (const face of faces) {
    if (state.tracks.length >= state.maxFaces) return lost;
    if (maxIou(face.box, state.tracks.map(trackBox)) > params.match_iou) continue;
    // A search's face is matched to the tracks as they were on its own frame: a followed face has moved off
    // its old box since, and a new face's mesh passes would only find the track's.
    const then = seen ? state.tracks.filter((track) => track.trackId in seen).map((track) => seen[track.trackId]) : [];
    if (maxIou(face.box, then) > params.match_iou) continue;
    const {points, presence, region} = yield* firstMesh(params, face, stale);
    if (presence < MIN_PRESENCE) {
      rejected.push(face);
      continue;
    }
    if (stale && maxIou(landmarkBox(points), state.tracks.map(trackBox)) > params.duplicate_iou) continue;
    const track = trackFor(params, state, face.box, lost, reach);
    track.region = region;
    takeMesh(params, track, points, presence, time);
    state.tracks.push(track);
  }
  return lost;
}

/** A new face's mesh: on the detection's square (a wider one where a stale detection's misses), then
 *  mesh_passes - 1 times on the square of the mesh before; {points, presence, region (of the last pass)}. */
function* firstMesh(params, face, stale) {
  let region = regionFromFace(face);
  let {points, presence} = yield {run: 'mesh', region};
  if (stale && presence < MIN_PRESENCE) {
    region = {...region, side: params.stale_widen * region.side};
    ({points, presence} = yield {run: 'mesh', region});
  }
  for (let pass = 1; pass < params.mesh_passes && presence >= MIN_PRESENCE; pass++) {
    region = regionFromLandmarks(points);
    ({points, presence} = yield {run: 'mesh', region});
  }
  return {points, presence, region};
}

/** The lost track this detection finds again (same id, fresh filter), or a new one: the first whose box the
 *  detection's overlaps by more than match_iou, or, for a look around lost tracks (`reach`), the nearest whose
 *  looked-at square (`reach` times its box's side) holds the detection's centre. */
function trackFor(params, state, box, lost, reach = null) {
  const old = reach === null ? lost.find((track) => boxIou(box, trackBox(track)) > params.match_iou) :
    nearestWithin(box, lost, reach);
  let trackId;
  if (old) {
    lost.splice(lost.indexOf(old), 1);
    trackId = old.trackId;
  } else {
    trackId = state.nextId;
    state.nextId += 1;
  }
  return {trackId, filters: state.smoothing ? newFilters() : null, face: null, region: null};
}

/** The track whose box centre is nearest the box's centre, among those whose square of `reach` times their box's
 *  side about that centre holds it (detectAround's square); undefined if none. */
function nearestWithin(box, tracks, reach) {
  const x = (box[0] + box[2]) / 2, y = (box[1] + box[3]) / 2;
  let best, distance = Infinity;
  for (const track of tracks) {
    const [x0, y0, x1, y1] = trackBox(track);
    const half = (reach * Math.max(x1 - x0, y1 - y0)) / 2, dx = x - (x0 + x1) / 2, dy = y - (y0 + y1) / 2;
    const apart = Math.hypot(dx, dy);
    if (Math.abs(dx) < half && Math.abs(dy) < half && apart < distance) [best, distance] = [track, apart];
  }
  return best;
}

/** Takes in the faces of the search that has answered, then asks for the next one if wanted (one at a time):
 *  the frame never waits for the detector. A search while every face is followed (the periodic one, for new
 *  faces) is the whole frame's pass alone (tiles false): the tiles' three more passes, on a core the frame loop
 *  shares, doubled the model's time for the ~4 frames it ran; faces that small (a tenth of the frame) are
 *  looked for when none is followed or a track is lost. {around, merged, search}. */
function* searchAside(params, state, found, time, due, lostNow, rejected) {
  let around = false;
  if (found !== null) {
    const seen = state.seen;
    Object.assign(state, {seen: null, searching: false});
    yield* detect(params, state, found, time, rejected, true, seen);
    if (found.length && !state.tracks.length) {
      // Faces found, none followed: they moved on while the search ran, and an old box would miss them again.
      // This frame looks itself, around where they were; what it misses, the next search finds.
      around = true;
      const faces = yield {run: 'detect_around', boxes: found.map((face) => face.box), reach: params.around_reach};
      yield* detect(params, state, faces, time, rejected);
    }
  }
  let search = null;
  if ((due || !state.tracks.length) && !state.searching) {
    state.searches += 1;
    search = {tiles: Boolean(lostNow || state.lost.length || !state.tracks.length)};
    state.searching = true;
    state.seen = Object.fromEntries(state.tracks.map((track) => [track.trackId, trackBox(track)]));
  }
  return {around, merged: found !== null, search};
}
