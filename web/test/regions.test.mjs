// The page's per-region strength (web/static/regions.mjs) against Python's (faces/region_weights.py): the
// recorded faces of tests/traces/regions/ (`python -m tools.region_fixture` writes them from real meshes, and
// tests/faces/test_face_regions.py checks they are still what Python gives) through the page's code. Plain Node:
//   node --test web/test/
import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';
import {test} from 'node:test';

import {importPage} from './page.mjs';

const {REGION_INPUTS, REGION_NAMES, TEMPLATE, pointsInCrop, regionMasks, regionShapes, shapedRegion, weightMap} =
  await importPage('regions.mjs');
const {compose} = await importPage('makeup.mjs');

const FIXTURES = new URL('../../tests/traces/regions/', import.meta.url);
const NAMES = readdirSync(FIXTURES).filter((name) => name.endsWith('.json')).sort();
const load = (name) => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));
const SHAPE_TOLERANCE = 1e-9;  // fractions of the crop: the two languages' rounding, far below a pixel
const WEIGHT_TOLERANCE = 1e-6;  // float32 weights

function assertClose(got, want, tolerance, where) {
  assert.equal(got.length, want.length, `${where}: ${got.length} values against ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    if (Array.isArray(want[i])) assertClose(got[i], want[i], tolerance, `${where}[${i}]`);
    else assert.ok(Math.abs(got[i] - want[i]) <= tolerance, `${where}[${i}]: ${got[i]} against ${want[i]}`);
  }
}

test('the fixtures cover a frontal face, a turned one and the template, each with the regions off, up and alone', () => {
  assert.deepEqual(NAMES, ['astronaut.json', 'cameraman.json', 'template.json']);
  for (const name of NAMES) {
    const strengths = load(name).weights.map((recorded) => recorded.strengths);
    assert.ok(strengths.some((each) => each.lips === 0) && strengths.some((each) => each.rest === 0), name);
    assert.ok(strengths.some((each) => REGION_NAMES.every((region) => each[region] === 1)), name);
  }
});

for (const name of NAMES) {
  test(`${name}: the page's shapes and weights are Python's`, () => {
    const fixture = load(name);
    const shapes = fixture.points ? regionShapes(fixture.points) : TEMPLATE;
    for (const region of Object.keys(fixture.shapes)) {
      assertClose(shapes[region], fixture.shapes[region], SHAPE_TOLERANCE, `${name} ${region}`);
    }
    for (const {strengths, map} of fixture.weights) {
      const weights = weightMap(fixture.shapes, strengths, fixture.size);
      if (REGION_NAMES.every((region) => strengths[region] === 1)) {
        assert.equal(weights, null, 'every strength at 1: no weighting at all');
        assert.ok(map.flat().every((weight) => weight === 1), 'and Python\'s map is exactly 1 everywhere');
      } else {
        assertClose(Array.from(weights), map.flat(), WEIGHT_TOLERANCE, `${name} ${JSON.stringify(strengths)}`);
      }
    }
  });
}

for (const name of NAMES) {
  test(`${name}: the page's region masks (a region-input network's maps) are Python's, in either layout`, () => {
    const {masks: {names, maps}, size, shapes} = load(name);
    assert.deepEqual(names, REGION_INPUTS, 'the maps a --region-inputs network reads, in its channel order');
    const planar = regionMasks(shapes, names, size), plane = size * size;
    assertClose(Array.from(planar), maps.flat(2), 0, `${name} K x S x S`);  // float32 of the same float64s
    const interleaved = regionMasks(shapes, names, size, {channelsLast: true});
    for (let k = 0; k < names.length; k++) {
      for (let i = 0; i < plane; i++) {
        assert.equal(interleaved[i * names.length + k], planar[k * plane + i], `${name} S x S x K at ${i}, ${k}`);
      }
    }
    const {lips: [[centreX, centreY]]} = shapes, at = Math.floor(centreY * size) * size + Math.floor(centreX * size);
    assert.ok(planar[at] === 1 && planar.some((value) => value > 0 && value < 1), 'soft, and 1 inside the lips');
    assert.ok(regionMasks(null, names, size).every((value) => value === 0), 'no mesh: no region known, all 0');
  });
}

test('a face\'s mesh points are read in its crop, turned and scaled', () => {
  const region = {origin: [100, 40], xAxis: [60, 80], yAxis: [-80, 60]};  // a 100 px crop turned by 53 degrees
  const inCrop = [[0.25, 0.5], [1, 0], [0.7, 0.9]];
  const inImage = inCrop.map(([u, v]) => [100 + 60 * u - 80 * v, 40 + 80 * u + 60 * v]);
  assertClose(pointsInCrop(region, inImage), inCrop, 1e-12, 'points');
  assert.equal(shapedRegion(region, null), region, 'no mesh: the crop as it is (the template\'s regions)');
});

test('lips at 0 leave the lips unchanged while the eyes change; all at 1 is compose() without regions', () => {
  const fixture = load('astronaut.json'), size = 64, plane = size * size;
  const photo = new ImageData(new Uint8ClampedArray(4 * plane).fill(128), size, size);
  const face = new Float32Array(3 * plane).fill(0.5), madeUp = new Float32Array(3 * plane).fill(0.6);
  const region = {origin: [0, 0], xAxis: [size, 0], yAxis: [0, size], shapes: fixture.shapes};  // the whole photo
  const made = (strengths) => compose(photo, [{region, face, madeUp}], size, 1, strengths);
  const at = (image, [x, y]) => image.data[4 * (Math.floor(y * size) * size + Math.floor(x * size))];
  const [lips] = fixture.shapes.lips, [eye] = fixture.shapes.eyes;
  const regions = made({lips: 0, eyes: 1, cheeks: 1, rest: 1});
  assert.equal(at(regions, lips), 128, 'the lips\' centre is the photo');
  assert.equal(at(regions, eye), 128 + 26, 'the eye\'s centre has the whole residual (0.1 x 255 = 25.5, to even)');
  assert.deepEqual(made({lips: 1, eyes: 1, cheeks: 1, rest: 1}).data, made(null).data);
});
