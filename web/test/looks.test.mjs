// The page's catalogue of looks (web/static/looks.mjs) in plain Node: the choices Python reads too
// (tests/traces/look_choices.json, replayed by tests/models/test_look_choice_cases.py) give the same weights
// or the same error; the blend slider's weights; a looks.json that does not fit its file is refused.
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';

import {importPage} from './page.mjs';

const {LookChoiceError, blendWeights, checkCatalogue, checkRegionInputs, describe, lookWeights} = await importPage('looks.mjs');
const SHARED = new URL('../../tests/traces/look_choices.json', import.meta.url);
const {cases: CASES} = JSON.parse(readFileSync(SHARED, 'utf8'));

test('the shared choices give the weights (or the error) models/look_choice.py gives', () => {
  assert.ok(CASES.length >= 20 && CASES.some((c) => c.error) && CASES.some((c) => c.weights === null));
  for (const {looks, choice, weights, error, described} of CASES) {
    if (error) {
      assert.throws(() => lookWeights(choice, looks), (thrown) => thrown instanceof LookChoiceError &&
                    thrown.message.includes(error), `${choice}: ${error}`);
      continue;
    }
    const got = lookWeights(choice, looks);
    if (weights === null) assert.equal(got, null, String(choice));
    else assert.deepEqual(Array.from(got), Array.from(Float32Array.from(weights)), String(choice));
    if (described) assert.equal(describe(got, looks), described);
  }
});

test('a choice the file cannot take names the file', () => {
  assert.throws(() => lookWeights('glitter', ['berry', 'smoky'], 'tinybeauty.onnx'),
                /tinybeauty.onnx has no look 'glitter'; its looks are berry, smoky \(by name, or index 0-1\)/);
});

test('the blend slider: (1 - t) on the look picked, t on the other; one-hot at 0 or on the same look', () => {
  assert.deepEqual(Array.from(blendWeights(3, 0, 2, 0.25)), [0.75, 0, 0.25]);
  assert.deepEqual(Array.from(blendWeights(3, 1, 2, 0)), [0, 1, 0]);
  assert.deepEqual(Array.from(blendWeights(2, 1, 1, 0.6)), [0, 1]);
  assert.deepEqual(Array.from(blendWeights(2, 0, 1, 1)), [0, 1]);
  assert.equal(describe(blendWeights(2, 0, 1, 0.3), ['berry', 'smoky']), 'berry 0.7 + smoky 0.3');
});

const CATALOGUE = {input: 'look_weights', looks: [{name: 'berry', index: 0, swatch_hex: '#9e143d'},
                                                  {name: 'smoky', index: 1, swatch_hex: '#4c403b'}]};

test("a looks.json that fits its file gives its looks; a one-look file's set needs none", () => {
  assert.deepEqual(checkCatalogue(CATALOGUE, 2, 'tinybeauty.onnx').map((look) => look.name), ['berry', 'smoky']);
  const one = {input: null, looks: [{name: 'berry', index: 0, swatch_hex: '#9e143d'}]};
  assert.equal(checkCatalogue(one, 0, 'tinybeauty.onnx').length, 1);
  assert.equal(checkCatalogue(null, 0, 'tinybeauty.onnx'), null, 'a set exported before looks.json');
});

test('a looks.json that names other looks than the file takes is refused, saying what to do', () => {
  const refused = (document, count, words) => assert.throws(
    () => checkCatalogue(document, count, 'tinybeauty.onnx'),
    (error) => words.every((word) => error.message.includes(word)));
  refused(CATALOGUE, 3, ['names 2 look(s) (berry, smoky)', 'tinybeauty.onnx takes 3 look weights', 'make export']);
  refused(CATALOGUE, 0, ['names 2 looks (berry, smoky)', 'takes no look input', 'make export']);
  refused(null, 2, ['tinybeauty.onnx takes 2 look weights', 'no looks.json', 'make export']);
  refused({looks: [{name: 'smoky', index: 1}, {name: 'berry', index: 0}]}, 2, ['index order']);
  refused({looks: []}, 0, ['index order']);
});

test('a region-input file reads the maps its looks.json names, in that order; without region_inputs, the trained three', () => {
  const document = {...CATALOGUE, region_inputs: ['eyes', 'lips', 'cheeks']};
  assert.deepEqual(checkRegionInputs(document, 3, 'tinybeauty.onnx'), ['eyes', 'lips', 'cheeks']);
  assert.deepEqual(checkRegionInputs({...CATALOGUE, region_inputs: ['lips']}, 1, 'tinybeauty.onnx'), ['lips']);
  assert.deepEqual(checkRegionInputs(CATALOGUE, 3, 'tinybeauty.onnx'), ['lips', 'eyes', 'cheeks']);
  assert.deepEqual(checkRegionInputs(null, 3, 'tinybeauty.onnx'), ['lips', 'eyes', 'cheeks']);
  assert.deepEqual(checkRegionInputs(CATALOGUE, 0, 'tinybeauty.onnx'), [], 'no regions input: no maps');
  assert.deepEqual(checkRegionInputs({...CATALOGUE, region_inputs: []}, 0, 'tinybeauty.onnx'), []);
});

test('region maps looks.json and the file disagree on are refused, saying what to do', () => {
  const refused = (document, count, words) => assert.throws(
    () => checkRegionInputs(document, count, 'tinybeauty.onnx'),
    (error) => words.every((word) => error.message.includes(word)), words.join(' '));
  const naming = (names) => ({...CATALOGUE, region_inputs: names});
  refused(naming(['lips', 'eyes', 'cheeks']), 0, ['names region maps (lips, eyes, cheeks)', 'takes no regions input',
                                                   'make export']);
  refused(naming(['lips', 'eyes']), 3, ['names 2 region map(s) (lips, eyes) but tinybeauty.onnx reads 3', 'make export']);
  refused(CATALOGUE, 2, ['tinybeauty.onnx reads 2 region maps', 'names none', 'make export']);
  refused(naming(['lips', 'nose', 'rest']), 3, ['nose, rest', 'cannot draw', 'lips, eyes, cheeks']);
  refused(naming('lips'), 1, ['not a list']);
});
