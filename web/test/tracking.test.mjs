// The tracker's recorded traces (tests/traces/tracking/, written by `python -m tools.tracking_traces`) replayed through
// the page's tracking_step.mjs, as tests/faces/test_tracking_traces.py replays them through faces.tracking_step: a
// decision or a number that changes on one side only fails that side's replay. Plain Node, no browser:
//   node --test web/test/
import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';
import {test} from 'node:test';

import {newState, regionParams, step} from '../static/tracking_step.mjs';

const ROOT = new URL('../../', import.meta.url);
const PARAMS = JSON.parse(readFileSync(new URL('faces/tracking.json', ROOT), 'utf8'));
const TRACES = new URL('tests/traces/tracking/', ROOT);
const NAMES = readdirSync(TRACES).filter((name) => name.endsWith('.json')).map((name) => name.slice(0, -5)).sort();
const TOLERANCE = 1e-6;  // tools.tracking_traces.TOLERANCE
// Each number the step reads, changed (tests/faces/test_tracking_traces.py's CHANGES): some trace must notice.
const CHANGES = {smoothing: {centre: [0.5, 20.0], size: [0.5, 20.0], angle: [0.5, 20.0]}, derivative_cutoff: 1.0,
                 fallback_fps: 60, mesh_passes: 2, region_hold: {shift: 0.06, scale: 0.05, degrees: 3.0},
                 match_iou: 0.7, duplicate_iou: 0.2, stale_widen: 1.5, around_reach: 5, catch_up: 0.25};

const load = (name) => JSON.parse(readFileSync(new URL(`${name}.json`, TRACES), 'utf8'));

// The traces' faces (faces.detection.Face's fields) as the page's detector gives them.
const pageFace = (face) => ({box: face.box, score: face.score, leftEye: face.left_eye, rightEye: face.right_eye,
                             nose: face.nose, mouth: face.mouth});

function outcomeJson({faces, rejected, search, detected, around, merged}) {
  return {faces: faces.map((face) => {
    const {centre, side, angle} = regionParams(face.region);
    return {track_id: face.trackId, centre, side, angle, confidence: face.confidence};
  }), rejected: rejected.map((face) => face.box), search, detected, around, merged};
}

/** Where two JSON values differ (numbers by more than TOLERANCE), as tools.tracking_traces.differences. */
function differences(got, want, where = '') {
  const isNumber = (value) => typeof value === 'number';
  if (Array.isArray(want) && Array.isArray(got)) {
    if (got.length !== want.length) return [`${where}: ${got.length} items against ${want.length}`];
    return want.flatMap((wanted, k) => differences(got[k], wanted, `${where}[${k}]`));
  }
  if (want && got && typeof want === 'object' && typeof got === 'object') {
    const keys = (value) => Object.keys(value).sort().join();
    if (keys(got) !== keys(want)) return [`${where}: keys ${keys(got)} against ${keys(want)}`];
    return Object.keys(want).flatMap((key) => differences(got[key], want[key], `${where}.${key}`));
  }
  if (isNumber(want) && isNumber(got)) return Math.abs(got - want) <= TOLERANCE ? [] : [`${where}: ${got} against ${want}`];
  return got === want ? [] : [`${where}: ${JSON.stringify(got)} against ${JSON.stringify(want)}`];
}

/** Every frame of the trace through the step; throws at the first request or outcome that differs. */
function replay(trace, params = PARAMS) {
  const {detect_every: detectEvery, max_faces: maxFaces, smoothing, aside} = trace.settings;
  let state = newState({detectEvery, maxFaces, smoothing});
  for (const [index, frame] of trace.frames.entries()) {
    const found = frame.found === null ? null : frame.found.map(pageFace);
    const steps = step(params, state, {width: frame.width, height: frame.height, time: frame.time, found, aside});
    let next = steps.next();
    let number = 0;
    for (; !next.done; number++) {
      const call = frame.calls[number];
      if (!call) throw new Error(`frame ${index}: the step asked for ${JSON.stringify(next.value)} after the trace's ${number} calls`);
      const wrong = differences(next.value, call.request, 'request');
      if (wrong.length) throw new Error(`frame ${index}, call ${number}: ${wrong.slice(0, 3).join('; ')}`);
      next = steps.next(call.request.run === 'mesh' ? call.answer : call.answer.map(pageFace));
    }
    const wrong = number < frame.calls.length ? [`the step made ${frame.calls.length - number} calls fewer than the trace`] : [];
    wrong.push(...differences(outcomeJson(next.value), frame.out, 'out'));
    if (wrong.length) throw new Error(`frame ${index}: ${wrong.slice(0, 3).join('; ')}`);
    state = next.value.state;
  }
}

test('the traces cover real runs and the edge cases', () => {
  for (const name of ['moving', 'leave_and_return', 'two_faces', 'lost_and_returned', 'out_of_frame',
                      'two_faces_duplicate_cap', 'stale_search', 'far_between_frames']) {
    assert.ok(NAMES.includes(name), name);
  }
});

for (const name of NAMES) test(`trace ${name} replays`, () => replay(load(name)));

for (const [key, value] of Object.entries(CHANGES)) {
  test(`a changed ${key} fails a replay`, () => {
    assert.notDeepEqual(PARAMS[key], value);
    const params = {...structuredClone(PARAMS), [key]: value};
    const noticed = NAMES.filter((name) => {
      try {
        replay(load(name), params);
        return false;
      } catch {
        return true;
      }
    });
    assert.ok(noticed.length, `no trace depends on ${key}`);
  });
}
