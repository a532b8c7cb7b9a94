// The page's face search is bounded as faces.detection's is, on the same numbers (faces/detection.json):
// Python's plans (tests/traces/search_plans.json, recorded by tests/faces/test_search_plans.py) replayed
// through faces.mjs searchPlan, and an image that cannot hold a face (the 50,000 x 1) refused
// before the detector runs once, where the page used to plan ~100,000 passes. Plain Node, no browser:
//   node --test web/test/
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';

import {UnsearchableImage, detectFaces, searchPlan} from '../static/faces.mjs';

const ROOT = new URL('../../', import.meta.url);
const BOUNDS = JSON.parse(readFileSync(new URL('faces/detection.json', ROOT), 'utf8'));
const PLANS = JSON.parse(readFileSync(new URL('tests/traces/search_plans.json', ROOT), 'utf8')).plans;

test('every recorded plan and refusal is the page\'s too', () => {
  for (const {size, scale, regions, refused} of PLANS) {
    if (refused) {
      assert.throws(() => searchPlan(...size, BOUNDS), (error) => error instanceof UnsearchableImage &&
                    error.message === refused, `${size.join('x')}`);
    } else {
      assert.deepEqual(searchPlan(...size, BOUNDS), {scale, regions}, `${size.join('x')}`);
    }
  }
  assert.ok(PLANS.some((plan) => plan.refused) && PLANS.some((plan) => plan.scale < 1));
});

test('an image that cannot hold a face is refused before the detector runs', async () => {
  let passes = 0;
  const detector = {search: BOUNDS, network: {run: async () => { passes += 1; throw new Error('no pass expected'); }}};
  for (const [width, height] of [[50_000, 1], [1, 50_000], [20_000, 100], [15, 15]]) {
    await assert.rejects(detectFaces(detector, {width, height}), UnsearchableImage, `${width}x${height}`);
  }
  assert.equal(passes, 0);
});

test('every accepted shape costs at most 2 x max_aspect passes on a bounded square', () => {
  const {max_aspect: aspect, max_search_side: side, min_face_pixels: least} = BOUNDS;
  for (const [width, height] of [[aspect * least, least], [least, aspect * least], [aspect * 2000, 2000],
                                 [8000, 8000], [side + 1, side]]) {
    const {scale, regions} = searchPlan(width, height, BOUNDS);
    assert.ok(regions.length <= 2 * aspect, `${width}x${height}: ${regions.length} passes`);
    assert.ok(Math.max(regions[0][2], regions[0][3]) <= side && scale <= 1, `${width}x${height}`);
  }
  assert.equal(searchPlan(1280, 720, BOUNDS, {tiles: false}).regions.length, 1);  // the camera's quick search
});
