// The catalogue of looks: which looks a several-look model file holds (looks.json, written beside the files by
// the export) and the weights its look input takes, one per look in the file's order: one-hot picks a look,
// weights adding up to 1 blend looks. A choice as a person writes it follows models/look_choice.py's rules:
//   berry                 the look named berry
//   2                     the look at index 2
//   berry=0.7,smoky=0.3   a blend (each weight in [0, 1], adding up to 1; looks not named get 0)
// A one-look file takes no look input (its weights are null). The same cases go through both languages
// (tests/traces/look_choices.json: web/test/looks.test.mjs and tests/models/test_look_choice_cases.py).
// No DOM here: app.mjs draws the swatches. looks.json also names the region maps a region-input file reads
// (region_inputs), checked here against the file too.
import {DEFINITION, REGION_INPUTS} from './regions.mjs';

export const BLEND_TOLERANCE = 1e-3;  // models/look_choice.py's: how far from 1 a blend may add up
export const LOOKS_FILE = 'looks.json';  // export/manifest.py LOOKS_FILE, beside the model files

export class LookChoiceError extends Error {}  // a choice the file cannot take: names it and the looks there are

function indexOf(name, looks, where) {
  if (looks.includes(name)) return looks.indexOf(name);
  if (/^\d+$/.test(name) && Number(name) < looks.length) return Number(name);
  throw new LookChoiceError(`${where} has no look '${name}'; its looks are ${looks.join(', ')} ` +
                            `(by name, or index 0-${looks.length - 1})`);
}

function weightOf(text, name) {
  const weight = text === '' ? NaN : Number(text);
  if (Number.isNaN(weight)) {
    throw new LookChoiceError(`the weight of ${name} in a blend must be a number in [0, 1], got '${text}'`);
  }
  if (!(weight >= 0 && weight <= 1)) {
    throw new LookChoiceError(`the weight of ${name} in a blend must be in [0, 1], got ${text}`);
  }
  return weight;
}

/** `choice` (see above; null or '' picks the first look) as the Float32Array of one weight per look a file of
 *  `looks` (names) takes; null for a one-look file. Throws LookChoiceError naming the choice and `where`'s looks. */
export function lookWeights(choice, looks, where = 'the model') {
  const text = (choice ?? '').trim();
  if (looks.length === 1) {
    if (text.includes('=')) {
      throw new LookChoiceError(`${where} holds one look (${looks[0]}), so it blends nothing; give no look, ` +
                                `or ${looks[0]}`);
    }
    if (text) indexOf(text, looks, where);  // its own name or index 0: refused otherwise
    return null;
  }
  const weights = new Float32Array(looks.length);
  if (!text.includes('=')) {
    weights[text ? indexOf(text, looks, where) : 0] = 1;
    return weights;
  }
  for (const part of text.split(',')) {
    const at = part.indexOf('=');
    const name = at < 0 ? '' : part.slice(0, at).trim();
    if (!name) {
      throw new LookChoiceError(`a blend is NAME=WEIGHT,NAME=WEIGHT (e.g. ${looks[0]}=0.7,${looks[1]}=0.3), ` +
                                `got '${text}'`);
    }
    const index = indexOf(name, looks, where);
    if (weights[index]) throw new LookChoiceError(`the blend '${text}' names ${looks[index]} twice`);
    weights[index] = weightOf(part.slice(at + 1).trim(), looks[index]);
  }
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  if (Math.abs(total - 1) > BLEND_TOLERANCE) {
    throw new LookChoiceError(`the blend '${text}' adds up to ${Number(total.toPrecision(6))}, not 1: give weights ` +
                              `that add up to 1 (looks: ${looks.join(', ')})`);
  }
  return weights;
}

/** The slider's blend between two looks of `count`: (1 - t) on `base`, t on `other` (one-hot where they are
 *  the same look or t is 0). */
export function blendWeights(count, base, other, t) {
  const weights = new Float32Array(count);
  weights[base] = 1 - t;
  weights[other] += t;
  return weights;
}

/** Weights in words, as models/look_choice.py describe(): 'berry', 'berry 0.7 + smoky 0.3' (null: the one look). */
export function describe(weights, looks) {
  if (!weights) return looks[0];
  const shares = looks.map((name, i) => [name, weights[i]]).filter(([, weight]) => weight > 0);
  return shares.length === 1 ? shares[0][0] :
    shares.map(([name, weight]) => `${name} ${Number(weight.toPrecision(6))}`).join(' + ');
}

/** The looks of `file` from its set's looks.json (`document`, parsed; null where the set has none), checked
 *  against the file itself: `lookCount`, the weights its look input takes (0: it has none). Returns the
 *  catalogue's entries [{name, index, swatch_hex, ...}] in the input's order (a one-look file without
 *  looks.json: null). Throws Error with what to do where the two disagree, e.g. a looks.json of another export. */
export function checkCatalogue(document, lookCount, file) {
  const redo = 'Re-export the set (`make export`) so the file and its looks.json come from the same network.';
  if (!document) {
    if (!lookCount) return null;
    throw new Error(`${file} takes ${lookCount} look weights but its set has no ${LOOKS_FILE} to name its looks. ` +
                    redo);
  }
  const looks = document.looks;
  const listed = Array.isArray(looks) && looks.length &&
    looks.every((look, i) => look?.index === i && typeof look.name === 'string');
  if (!listed) {
    throw new Error(`${LOOKS_FILE} does not list its looks as [{name, index}] in index order 0, 1, ... ${redo}`);
  }
  const names = looks.map((look) => look.name).join(', ');
  if (lookCount === 0 && looks.length > 1) {
    throw new Error(`${LOOKS_FILE} names ${looks.length} looks (${names}) but ${file} takes no look input: it holds ` +
                    `one look. ${redo}`);
  }
  if (lookCount && looks.length !== lookCount) {
    throw new Error(`${LOOKS_FILE} names ${looks.length} look(s) (${names}) but ${file} takes ${lookCount} look ` +
                    `weights. ${redo}`);
  }
  return looks;
}

/** The region maps `file` reads beside the face, in the order of its regions input (`regionCount` maps; 0: it has
 *  none), from its set's looks.json (`document`, parsed; null where the set has none): its region_inputs, or where
 *  it names none the maps training gives its networks (REGION_INPUTS) if the file reads as many. Each must be one
 *  the page can draw (faces/regions.json's shapes). Returns the names ([] for a file without region maps); throws
 *  Error with what to do where looks.json and the file disagree. */
export function checkRegionInputs(document, regionCount, file) {
  const redo = 'Re-export the set (`make export`) so the file and its looks.json come from the same network.';
  const listed = document?.region_inputs ?? null;
  if (listed !== null && !(Array.isArray(listed) && listed.every((name) => typeof name === 'string'))) {
    throw new Error(`${LOOKS_FILE}'s region_inputs is not a list of region names. ${redo}`);
  }
  if (!regionCount) {
    if (listed?.length) {
      throw new Error(`${LOOKS_FILE} names region maps (${listed.join(', ')}) but ${file} takes no regions input. ${redo}`);
    }
    return [];
  }
  const names = listed ?? (regionCount === REGION_INPUTS.length ? REGION_INPUTS : null);
  if (!names) {
    throw new Error(`${file} reads ${regionCount} region maps but its set's ${LOOKS_FILE} names none (region_inputs). ` +
                    redo);
  }
  if (names.length !== regionCount) {
    throw new Error(`${LOOKS_FILE} names ${names.length} region map(s) (${names.join(', ')}) but ${file} reads ` +
                    `${regionCount}. ${redo}`);
  }
  const unknown = names.filter((name) => !Object.hasOwn(DEFINITION.shapes, name));
  if (unknown.length) {
    throw new Error(`${file} reads the region map(s) ${unknown.join(', ')}, which this page cannot draw (its regions: ` +
                    `${Object.keys(DEFINITION.shapes).join(', ')}): serve the set with the page of its own version.`);
  }
  return [...names];
}
