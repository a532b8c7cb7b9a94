// Where the page turns pixels into the model's tensor and back (web/static/makeup.mjs: faceTensor,
// runModel) and how it picks a runtime (web/static/network.mjs), in plain Node. The runtimes themselves
// run in Chromium (tests/web/test_web.py).
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {contextOf, importPage} from './page.mjs';

const {faceTensor, modelInputs, regionMapsFor, runModel} = await importPage('makeup.mjs');
const {REGION_INPUTS, regionMasks} = await importPage('regions.mjs');
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

test("a file's inputs are found by shape, and its region maps by name (the .tflite's can have the face's shape)", () => {
  const input = (name, shape) => ({name, shape});
  assert.deepEqual(modelInputs([input('face', [1, 3, 8, 8])], 'a.onnx'),
                   {faceInput: 0, lookInput: -1, lookCount: 0, regionInput: -1, regionCount: 0, channelsLast: false});
  assert.deepEqual(modelInputs([input('face', [1, 3, 8, 8]), input('look_weights', [1, 2]), input('regions', [1, 3, 8, 8])],
                               'a.onnx'),
                   {faceInput: 0, lookInput: 1, lookCount: 2, regionInput: 2, regionCount: 3, channelsLast: false});
  // LiteRT: the face positional (args_0), the maps by keyword; both [1, S, S, 3], in any order
  assert.deepEqual(modelInputs([input('serving_default_regions:0', [1, 8, 8, 3]), input('serving_default_args_0:0', [1, 8, 8, 3])],
                               'a.tflite'),
                   {faceInput: 1, lookInput: -1, lookCount: 0, regionInput: 0, regionCount: 3, channelsLast: true});
  assert.equal(modelInputs([input('face', [1, 3, 8, 8]), input('regions', [1, 4, 8, 8])], 'a.onnx').regionCount, 4);
  for (const inputs of [[input('face', [1, 3, 8, 8]), input('maps', [1, 3, 8, 8])],  // a second image, not named regions
                        [input('face', [1, 3, 8, 8]), input('regions', [1, 3, 4, 4])],  // maps of another size
                        [input('regions', [1, 3, 8, 8])]]) {
    assert.throws(() => modelInputs(inputs, 'a.onnx'), /a.onnx takes .*not a TinyBeauty makeup file.*regions \[1, K, S, S\]/);
  }
});

test("a region-input model is fed each face's maps in its layout, all 0 without a mesh; another model, none", async () => {
  const size = 8, plane = size * size, seen = [];
  const shapes = {lips: [[0.5, 0.7, 0.2, 0.06, 0, 0.4]], eyes: [[0.35, 0.4, 0.1, 0.05, 0, 0.3]],
                  cheeks: [[0.3, 0.6, 0.08, 0.06, 0, 1.5]]};
  const network = {run: async (...data) => { seen.push(data); return [new Float32Array(3 * plane)]; }};
  const face = new Float32Array(3 * plane).fill(0.5);
  for (const channelsLast of [false, true]) {
    const model = {network, size, channelsLast, faceInput: 0, regionInput: 1, regionCount: 3, regionNames: REGION_INPUTS};
    const maps = regionMapsFor(model, {origin: [0, 0], xAxis: [size, 0], yAxis: [0, size], shapes});
    assert.deepEqual(maps, regionMasks(shapes, REGION_INPUTS, size, {channelsLast}));
    assert.ok(maps.some((value) => value > 0));
    await runModel(model, face, null, maps);
    assert.equal(seen.at(-1)[1], maps, 'fed as drawn');
    const none = regionMapsFor(model, {origin: [0, 0], xAxis: [size, 0], yAxis: [0, size]});
    assert.ok(none.length === 3 * plane && none.every((value) => value === 0), 'no mesh: all 0');
    await runModel(model, face);  // null: all 0 (the first run that sets up kernels)
    assert.ok(seen.at(-1)[1].length === 3 * plane && seen.at(-1)[1].every((value) => value === 0));
    await assert.rejects(runModel(model, face, null, new Float32Array(plane)), /64 region map values .* reads 192/);
  }
  const plain = {network, size, channelsLast: false, regionInput: -1};
  assert.equal(regionMapsFor(plain, {shapes}), null, 'a model without region maps: nothing drawn');
  await runModel(plain, face, null, null);
  assert.equal(seen.at(-1).length, 1, 'the face alone');
  assert.throws(() => regionMapsFor({network, size, regionInput: 1, regionCount: 2, regionNames: null, url: 'm.onnx'}, {shapes}),
                /m.onnx reads 2 region maps but which is not known: .*looks.json names them/);
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
