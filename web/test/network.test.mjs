// Where the page turns pixels into the model's tensor and back (web/static/makeup.mjs: faceTensor,
// runModel) and how it picks a runtime (web/static/network.mjs), in plain Node. The runtimes themselves
// run in Chromium (tests/web/test_web.py).
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {contextOf, importPage} from './page.mjs';

const {faceTensor, runModel} = await importPage('makeup.mjs');
const {defaultLitertThreads, formatOf} = await importPage('network.mjs');

/** A canvas holding `width` x `height` pixels whose R, G, B, A encode x, y, x + y and 255. */
function canvasOf(width, height) {
  const data = new Uint8ClampedArray(4 * width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set([x, y, x + y, 255], 4 * (y * width + x));
  }
  const context = contextOf(new ImageData(data, width, height));
  return {width, height, getContext: () => context};
}

/** Globals the browser has and Node lacks (or differs on), set for one test. */
function withGlobals(values, run) {
  const saved = Object.fromEntries(Object.keys(values).map((name) => [name, Object.getOwnPropertyDescriptor(globalThis, name)]));
  for (const [name, value] of Object.entries(values)) {
    Object.defineProperty(globalThis, name, {value, configurable: true, writable: true});
  }
  try {
    return run();
  } finally {
    for (const [name, descriptor] of Object.entries(saved)) {
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
      else delete globalThis[name];
    }
  }
}

test("an aligned crop at the model's size is copied pixel for pixel into planar RGB floats in [0, 1]", () => {
  const size = 4, face = faceTensor(canvasOf(10, 8), {origin: [3, 2], xAxis: [size, 0], yAxis: [0, size]}, size);
  assert.ok(face instanceof Float32Array);
  assert.equal(face.length, 3 * size * size, 'three planes, alpha dropped');
  const plane = size * size;
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const [x, y] = [3 + u, 2 + v];
      assert.deepEqual([face[v * size + u], face[plane + v * size + u], face[2 * plane + v * size + u]],
                       [x / 255, y / 255, (x + y) / 255].map(Math.fround), `crop pixel ${u}, ${v}`);
    }
  }
});

test('a channels-last model gets the face interleaved (HWC) and its output comes back planar (CHW)', async () => {
  const size = 2, plane = size * size;
  const face = Float32Array.from({length: 3 * plane}, (_, i) => i);  // R 0-3, G 4-7, B 8-11
  const seen = [];
  const network = {run: async (data) => { seen.push(Array.from(data)); return [data.map((value) => value + 100)]; }};
  const {madeUp, ms} = await runModel({network, channelsLast: true, size}, face);
  assert.deepEqual(seen, [[0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]]);
  assert.deepEqual(Array.from(madeUp), Array.from(face, (value) => value + 100));
  assert.ok(ms >= 0);
});

test('a channels-first model gets the planar face as it is, and its output is returned as it is', async () => {
  const face = Float32Array.from({length: 12}, (_, i) => i / 10), output = new Float32Array(12).fill(0.25);
  const seen = [];
  const network = {run: async (data) => { seen.push(data); return [output, new Float32Array(1)]; }};
  const {madeUp} = await runModel({network, channelsLast: false, size: 2}, face);
  assert.equal(seen[0], face);
  assert.equal(madeUp, output, 'the first output');
});

test('the runtime is chosen by the file name: .tflite for LiteRT.js, anything else for onnxruntime-web', () => {
  withGlobals({location: new URL('http://127.0.0.1:8000/index.html?model=x')}, () => {
    assert.equal(formatOf('model/tinybeauty.tflite'), 'tflite');
    assert.equal(formatOf('/model/TinyBeauty.TFLITE?cache=2'), 'tflite', 'case and query ignored');
    assert.equal(formatOf('model/tinybeauty.onnx'), 'onnx');
    assert.equal(formatOf('model/tinybeauty.tflite.onnx'), 'onnx');
    assert.equal(formatOf('http://example.com/a.tflite#part'), 'tflite');
  });
});

test("LiteRT.js's default threads: every core up to four where the page is isolated, one where it is not", () => {
  const threads = (isolated, cores) =>
    withGlobals({self: {crossOriginIsolated: isolated}, navigator: {hardwareConcurrency: cores}}, defaultLitertThreads);
  assert.deepEqual([threads(true, 2), threads(true, 8), threads(true, 0), threads(false, 8)], [2, 4, 1, 1]);
});
