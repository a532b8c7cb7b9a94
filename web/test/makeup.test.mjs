// The page's compositing (web/static/makeup.mjs) in plain Node: compose() for photos, composePatch()
// for camera frames, against values worked out by hand and against each other.
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {contextOf, importPage} from './page.mjs';

const {MASK, compose, composePatch, wholePhoto} = await importPage('makeup.mjs');

/** A width x height RGBA image, every pixel `rgba` (or rgba(x, y) where a function). */
function image(width, height, rgba) {
  const data = new Uint8ClampedArray(4 * width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(typeof rgba === 'function' ? rgba(x, y) : rgba, 4 * (y * width + x));
  }
  return new ImageData(data, width, height);
}

/** A made-up face of size x size: face 0.5 everywhere, madeUp = face + residual(channel, u, v). */
function madeUpFace(size, residual) {
  const plane = size * size, face = new Float32Array(3 * plane).fill(0.5), madeUp = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < size; v++) {
      for (let u = 0; u < size; u++) madeUp[c * plane + v * size + u] = 0.5 + residual(c, u, v);
    }
  }
  return {face, madeUp};
}

const pixel = (photo, x, y) => Array.from(photo.data.subarray(4 * (y * photo.width + x), 4 * (y * photo.width + x) + 4));

test('a constant residual on the whole photo moves every pixel by strength x 255 x residual, clamped, alpha kept', () => {
  const photo = image(5, 3, (x) => [100, 250, 3, 7 + x]);
  const {face, madeUp} = madeUpFace(4, (c) => [20, 20, -20][c] / 255);
  const out = compose(photo, [{region: wholePhoto(5, 3), face, madeUp}], 4, 1);
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 5; x++) assert.deepEqual(pixel(out, x, y), [120, 255, 0, 7 + x], `pixel ${x}, ${y}`);
  }
  assert.deepEqual(pixel(photo, 0, 0), [100, 250, 3, 7], 'the photo itself is untouched');
  const half = compose(photo, [{region: wholePhoto(5, 3), face, madeUp}], 4, 0.5);
  assert.deepEqual(pixel(half, 0, 0), [110, 255, 0, 7]);
});

test('the whole photo gets the residual upsampled as PyTorch bilinear with align_corners=False', () => {
  // A 2 x 2 residual onto 4 pixels a row: source coordinates -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
  const {face, madeUp} = madeUpFace(2, (c, u) => (u === 0 ? 0 : 40) / 255);
  const out = compose(image(4, 2, [100, 100, 100, 255]), [{region: wholePhoto(4, 2), face, madeUp}], 2, 1);
  for (let y = 0; y < 2; y++) {
    assert.deepEqual([0, 1, 2, 3].map((x) => pixel(out, x, y)[0]), [100, 110, 130, 140], `row ${y}`);
  }
});

test('a face in a larger photo is made up inside the mask ellipse only, fully at its centre', () => {
  const size = 8, photo = image(40, 30, [100, 100, 100, 255]);
  const region = {origin: [10, 5], xAxis: [16, 0], yAxis: [0, 16]};
  const {face, madeUp} = madeUpFace(size, () => 30 / 255);
  const out = compose(photo, [{region, face, madeUp}], size, 1);
  const centre = [10 + 16 * MASK.centre[0], 5 + 16 * MASK.centre[1]].map(Math.floor);
  assert.deepEqual(pixel(out, ...centre), [130, 130, 130, 255]);
  assert.deepEqual(pixel(out, 10, 5), [100, 100, 100, 255], "the box's corner lies outside the ellipse");
  assert.deepEqual(pixel(out, 5, 5), [100, 100, 100, 255], 'outside the box');
  const changed = [];
  for (let y = 0; y < 30; y++) for (let x = 0; x < 40; x++) if (pixel(out, x, y)[0] !== 100) changed.push([x, y]);
  assert.ok(changed.every(([x, y]) => x >= 10 && x < 26 && y >= 5 && y < 21), 'nothing changes outside the box');
  assert.ok(changed.length > 0.5 * Math.PI * MASK.radii[0] * MASK.radii[1] * 16 * 16, `${changed.length} pixels`);
});

test('a rotated face is warped back through its region: the residual follows the crop, not the photo', () => {
  // The crop's x axis points down the photo: a residual on the crop's left half lands on the box's top half.
  const size = 8, photo = image(30, 30, [100, 100, 100, 255]);
  const region = {origin: [23, 7], xAxis: [0, 16], yAxis: [-16, 0]};
  const {face, madeUp} = madeUpFace(size, (c, u) => (u < size / 2 ? 40 : 0) / 255);
  const out = compose(photo, [{region, face, madeUp}], size, 1);
  assert.equal(pixel(out, 15, 11)[0], 140, 'crop (0.3, 0.5): its left half');
  assert.equal(pixel(out, 15, 19)[0], 100, 'crop (0.8, 0.5): its right half');
});

test('composePatch on a frame gives exactly the pixels compose gives the photo, overlapping faces included', () => {
  const size = 8, width = 48, height = 32;
  const frame = image(width, height, (x, y) => [(7 * x + 3 * y) % 256, (5 * x * y) % 256, 200 - 4 * y, 255]);
  const faces = [
    {region: {origin: [4.3, 2.6], xAxis: [20, 3], yAxis: [-3, 20]}, ...madeUpFace(size, (c, u, v) => (c * 9 + u - v) / 255)},
    {region: {origin: [14.5, 6.2], xAxis: [18, -4], yAxis: [4, 18]}, ...madeUpFace(size, (c, u, v) => (u * v - 20) / 255)},
  ];
  const expected = compose(frame, faces, size, 1.5);
  const context = contextOf(frame), shown = new ImageData(new Uint8ClampedArray(frame.data), width, height);
  const patches = [];
  for (const face of faces) {
    const patch = composePatch(context, face, size, 1.5, patches);
    patches.push(patch);
    const [x0, y0, x1, y1] = patch.box;
    assert.ok(x0 >= 0 && y0 >= 0 && x1 <= width && y1 <= height && x1 - x0 < width, `box ${patch.box}`);
    for (let y = y0; y < y1; y++) {
      shown.data.set(patch.pixels.data.subarray(4 * (y - y0) * (x1 - x0), 4 * (y - y0 + 1) * (x1 - x0)), 4 * (y * width + x0));
    }
  }
  const [a, b] = patches.map((patch) => patch.box);
  assert.ok(a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3], 'the two faces overlap');
  assert.deepEqual(shown.data, expected.data);
});

test('composePatch of the whole photo is the whole frame as compose makes it; of a region outside it, null', () => {
  const frame = image(6, 4, (x, y) => [40 * x, 50 * y, 9, 255]);
  const face = {region: wholePhoto(6, 4), ...madeUpFace(3, (c, u, v) => (u + 2 * v) * 10 / 255)};
  const patch = composePatch(contextOf(frame), face, 3, 1);
  assert.deepEqual(patch.box, [0, 0, 6, 4]);
  assert.deepEqual(patch.pixels.data, compose(frame, [face], 3, 1).data);
  const outside = {region: {origin: [10, 10], xAxis: [5, 0], yAxis: [0, 5]}, ...madeUpFace(3, () => 0.1)};
  assert.equal(composePatch(contextOf(frame), outside, 3, 1), null);
});
