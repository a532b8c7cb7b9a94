// The page's pipeline, the same steps as `python -m apply`: photo -> face box -> model input
// (256 x 256) -> the model (onnxruntime-web or LiteRT.js, network.mjs) -> residual -> upsampled onto the photo at full resolution.
// A region-input network (the default of `python -m train`) also reads the face's region maps, drawn from the
// mesh that placed its crop (regions.mjs regionMasks; all 0 for a face without one).
// No DOM here beyond offscreen canvases, so the UI (app.mjs), the tests and the benchmark all
// drive exactly this code.
import {blendWeights} from './looks.mjs';
import {RUNTIMES, formatOf, openNetwork} from './network.mjs';
import {REGION_INPUTS, TEMPLATE, regionMasks, weightMap} from './regions.mjs';

export const MAX_STRENGTH = 2;
export const MAX_PIXELS = 50e6;       // a 48 MP phone photo fits; the page holds ~3 copies of it
export const MAX_FILE_BYTES = 200e6;  // refused before decoding
// The feathered face mask of apply/__main__.py, in fractions of the face box: an ellipse over
// the face of an FFHQ-style crop that fades to zero over FEATHER. Used when the box is only
// part of the photo; a photo that is itself the face crop is made up everywhere (apply --aligned).
export const MASK = {centre: [0.5, 0.55], radii: [0.36, 0.44], feather: 0.12};

// A region-input file's maps input (export/common.py), 'regions' in the .onnx; LiteRT names an input given by keyword
// after it, so the .tflite's name holds it too. Found by name: its shape can be the face's ([1, S, S, 3] for K = 3).
export const REGIONS_INPUT = 'regions';

export class InputError extends Error {}   // a file the page cannot use
export class ModelError extends Error {}   // a model the page cannot load or run

/** Fetch a model file and open it: an .onnx in onnxruntime-web, a .tflite (NHWC) in LiteRT.js
 *  (network.mjs). `threads` 0/undefined = the runtime's default. `regionNames`: the maps a region-input file
 *  reads, in its channel order (looks.mjs checkRegionInputs: its set's looks.json's, checked against the file);
 *  by default the ones training gives its networks (REGION_INPUTS) where the file reads as many, else null until
 *  the page sets them. */
export async function loadModel(url, {threads, regionNames = null} = {}) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ModelError(`could not fetch the model ${url}: ${error.message}`);
  }
  if (!response.ok) {
    throw new ModelError(`the model ${url} could not be fetched (HTTP ${response.status}): export it first ` +
                         '(`make export`), then reload this page');
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const started = performance.now();
  let network;
  try {
    network = await openNetwork(url, bytes, {threads});
  } catch (error) {
    throw new ModelError(`${RUNTIMES[formatOf(url)]} could not load ${url} (${bytes.length.toLocaleString()} bytes): ` +
                         `${error.message || error}. Re-export it (\`make export\`) or pick another model file.`);
  }
  const {faceInput, lookInput, lookCount, regionInput, regionCount, channelsLast} = modelInputs(network.inputs, url);
  const shape = network.inputs[faceInput].shape;
  const size = typeof shape[2] === 'number' ? shape[2] : 256;
  const model = {
    network, url, bytes: bytes.length, size, channelsLast, format: network.format, faceInput, lookInput, lookCount,
    regionInput, regionCount,
    regionNames: regionNames ?? (regionCount && regionCount === REGION_INPUTS.length ? [...REGION_INPUTS] : null),
    loadMs: performance.now() - started, threads: network.threads, isolated: self.crossOriginIsolated,
    runtime: network.runtime, runtimeVersion: network.version,
  };
  try {
    await runModel(model, new Float32Array(3 * size * size));  // the first run sets up kernels: not a photo's time
  } catch (error) {
    throw new ModelError(`${url} loaded but does not run as a ${size}×${size} face model: ${error.message || error}`);
  }
  return model;
}

/** Which of a makeup file's inputs is which, in either runtime (their names and order may differ): the face
 *  (1 x 3 x S x S, or 1 x S x S x 3: channelsLast), in a file of several looks its look weights (1 x L), and in a
 *  region-input file its region maps (named REGIONS_INPUT; 1 x K x S x S, or 1 x S x S x K as the face is).
 *  regionInput -1 and regionCount 0 for a file without region maps. */
export function modelInputs(inputs, url) {
  const regionInput = inputs.findIndex(({name, shape}) => shape.length === 4 && String(name).includes(REGIONS_INPUT));
  const faceInput = inputs.findIndex(({shape}, i) => shape.length === 4 && i !== regionInput);
  const lookInput = inputs.findIndex(({shape}) => shape.length === 2);
  const face = inputs[faceInput]?.shape ?? [];
  const channelsLast = face[3] === 3 && face[1] !== 3;  // the .tflite's [1, S, S, 3]
  const regions = inputs[regionInput]?.shape;
  const sameGrid = !regions || (channelsLast ? regions[1] === face[1] && regions[2] === face[2] :
                                                regions[2] === face[2] && regions[3] === face[3]);
  const expected = faceInput >= 0 && inputs.length === 1 + (lookInput >= 0) + (regionInput >= 0) && sameGrid;
  if (!expected || (lookInput >= 0 && !(inputs[lookInput].shape[1] > 1))) {
    const found = inputs.map(({name, shape}) => `${name} [${shape.join(', ')}]`).join(', ');
    throw new ModelError(`${url} takes ${found}: not a TinyBeauty makeup file (a face [1, 3, S, S], for ` +
                         'several looks their weights [1, L], for region maps regions [1, K, S, S]). Re-export it ' +
                         '(`make export`) or pick another model file.');
  }
  return {faceInput, lookInput, lookCount: lookInput >= 0 ? inputs[lookInput].shape[1] : 0, regionInput,
          regionCount: regions ? regions[channelsLast ? 3 : 1] : 0, channelsLast};
}

/** The region maps `model` reads for a face in `region` (the model's crop), in the file's layout: each region's mask
 *  from the shapes the region carries (regions.mjs shapedRegion: its face's mesh; a photo's crop no mesh placed:
 *  tracking.mjs cropShapes), all 0 where it carries none (a face the mesh missed, the camera's whole frame or box
 *  placed by hand). null for a model without region maps: no work. */
export function regionMapsFor(model, region) {
  if (!(model.regionInput >= 0)) return null;
  if (model.regionNames?.length !== model.regionCount) {
    throw new ModelError(`${model.url} reads ${model.regionCount} region maps but which is not known: its set's ` +
                         'looks.json names them (region_inputs); re-export the set (`make export`)');
  }
  return regionMasks(region.shapes ?? null, model.regionNames, model.size, {channelsLast: model.channelsLast});
}

/** Decode a File/Blob into an upright RGBA canvas with its exact pixel values (no colour management). */
export async function decodePhoto(file) {
  const name = file.name || 'the file';
  if (file.size > MAX_FILE_BYTES) {
    throw new InputError(`${name} is ${(file.size / 1e6).toFixed(0)} MB; this page takes files up to ` +
                         `${MAX_FILE_BYTES / 1e6} MB. Scale the photo down first.`);
  }
  if (file.type && !file.type.startsWith('image/')) {
    throw new InputError(`${name} is not an image (${file.type}): pick a JPEG, PNG or WebP photo.`);
  }
  let bitmap;
  try {
    // Without these options Chrome colour-converts and premultiplies, and the pixels differ from PIL's.
    bitmap = await createImageBitmap(file, {colorSpaceConversion: 'none', premultiplyAlpha: 'none',
                                            imageOrientation: 'from-image'});
  } catch (error) {
    throw new InputError(`${name} could not be decoded as an image (${error.message}). ` +
                         'Pick a JPEG, PNG or WebP photo.');
  }
  const {width, height} = bitmap;
  if (width * height > MAX_PIXELS) {
    bitmap.close();
    throw new InputError(`${name} is ${width}×${height} (${(width * height / 1e6).toFixed(0)} MP); this page ` +
                         `takes photos up to ${MAX_PIXELS / 1e6} MP. Scale it down first.`);
  }
  const canvas = drawnCanvas(bitmap, width, height);
  bitmap.close();
  return canvas;
}

/** Any drawable (an ImageBitmap, a video frame) on a fresh canvas of its size. */
export function drawnCanvas(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d', {willReadFrequently: true}).drawImage(source, 0, 0);
  return canvas;
}

export function pixelsOf(canvas) {
  return canvas.getContext('2d', {willReadFrequently: true}).getImageData(0, 0, canvas.width, canvas.height);
}

/** The manual face box: the whole photo when it is (nearly) square, else a centred square a little
 *  above the middle (faces sit high in portraits). */
export function defaultBox(width, height) {
  const size = Math.min(width, height);
  if (Math.abs(width - height) <= 0.02 * Math.max(width, height)) return {x: 0, y: 0, size};
  return {x: Math.round((width - size) / 2), y: Math.round((height - size) * 0.35), size};
}

export function clampBox(box, width, height) {
  const size = Math.max(16, Math.min(Math.round(box.size), width, height));
  return {size, x: Math.min(Math.max(0, Math.round(box.x)), width - size),
          y: Math.min(Math.max(0, Math.round(box.y)), height - size)};
}

/** The whole photo as the model's crop: a photo that is itself an aligned face crop (apply --aligned). */
export function wholePhoto(width, height) {
  return {origin: [0, 0], xAxis: [width, 0], yAxis: [0, height]};
}

/** Whether the region is wholePhoto(width, height): the residual is then upsampled onto every pixel. */
function isWholePhoto({origin, xAxis, yAxis}, width, height) {
  return origin[0] === 0 && origin[1] === 0 && xAxis[0] === width && xAxis[1] === 0 && yAxis[0] === 0 &&
         yAxis[1] === height;
}

/** Image -> crop pixel coordinates of a region {origin, xAxis, yAxis} seen as a size x size crop. */
function toCrop(region, size) {
  const [ax, ay] = region.xAxis, [bx, by] = region.yAxis, [ox, oy] = region.origin;
  const det = ax * by - bx * ay;
  const m = [size * by / det, -size * bx / det, -size * ay / det, size * ax / det];  // row-major 2 x 2
  return {m, e: -(m[0] * ox + m[1] * oy), f: -(m[2] * ox + m[3] * oy)};
}

const crops = new Map();  // size -> the 2D context faceTensor resamples into, one per realm

/** The model's input: the region resampled to size x size, as 1 x 3 x size x size floats in [0, 1]
 *  (black outside the photo), as apply samples it: bilinear, filtered only where the face is larger than
 *  the crop (apply supersamples there). An axis-aligned region already at the model's size is copied
 *  pixel for pixel (no resampling at all). */
export function faceTensor(canvas, region, size) {
  const [ox, oy] = region.origin;
  let pixels;
  if (region.xAxis[0] === size && region.yAxis[1] === size && region.xAxis[1] === 0 && region.yAxis[0] === 0 &&
      Number.isInteger(ox) && Number.isInteger(oy)) {
    pixels = canvas.getContext('2d', {willReadFrequently: true}).getImageData(ox, oy, size, size).data;
  } else {
    if (!crops.has(size)) crops.set(size, new OffscreenCanvas(size, size).getContext('2d', {willReadFrequently: true}));
    const context = crops.get(size);
    const {m, e, f} = toCrop(region, size);
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = '#000';
    context.fillRect(0, 0, size, size);
    context.imageSmoothingEnabled = true;
    // 'high' filters when shrinking (mipmaps: ~0.7 ms more for a 1280x720 frame); 'low' is plain bilinear.
    context.imageSmoothingQuality = Math.hypot(...region.xAxis) > size ? 'high' : 'low';
    context.setTransform(m[0], m[2], m[1], m[3], e, f);
    context.drawImage(canvas, 0, 0);
    pixels = context.getImageData(0, 0, size, size).data;
  }
  const plane = size * size;
  const face = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    face[i] = pixels[4 * i] / 255;
    face[plane + i] = pixels[4 * i + 1] / 255;
    face[2 * plane + i] = pixels[4 * i + 2] / 255;
  }
  return face;
}

/** One model run: the made-up face (1 x 3 x size x size floats, planar like `face`) and the time the
 *  runtime took. A channels-last model gets the face interleaved and its output planar again. A file of
 *  several looks takes `lookWeights` too (looks.mjs: a Float32Array, one weight per look; null: the first
 *  look), another input value of the same session: switching looks never reloads the model. A region-input
 *  file takes `regions`, its maps in its own layout (regionMapsFor; null: all 0, no region known). */
export async function runModel(model, face, lookWeights = null, regions = null) {
  const inputs = [];
  inputs[model.faceInput ?? 0] = model.channelsLast ? interleaved(face, model.size) : face;
  if (model.lookCount) inputs[model.lookInput] = lookWeights ?? blendWeights(model.lookCount, 0, 0, 0);
  if (model.regionInput >= 0) {
    const length = model.regionCount * model.size * model.size;
    if (regions && regions.length !== length) {
      throw new ModelError(`${regions.length} region map values for a model that reads ${length} ` +
                           `(${model.regionCount} maps at ${model.size}×${model.size})`);
    }
    inputs[model.regionInput] = regions ?? new Float32Array(length);
  }
  const started = performance.now();
  const [output] = await model.network.run(...inputs);
  const ms = performance.now() - started;
  return {madeUp: model.channelsLast ? planar(output, model.size) : output, ms};
}

function interleaved(face, size) {
  const plane = size * size, out = new Float32Array(3 * plane);
  for (let i = 0, j = 0; i < plane; i++, j += 3) {
    out[j] = face[i];
    out[j + 1] = face[plane + i];
    out[j + 2] = face[2 * plane + i];
  }
  return out;
}

function planar(pixels, size) {
  const plane = size * size, out = new Float32Array(3 * plane);
  for (let i = 0, j = 0; i < plane; i++, j += 3) {
    out[i] = pixels[j];
    out[plane + i] = pixels[j + 1];
    out[2 * plane + i] = pixels[j + 2];
  }
  return out;
}

function smoothstep(ramp) {
  const t = Math.min(1, Math.max(0, ramp));
  return t * t * (3 - 2 * t);
}

/** madeUp - face: the residual, weighted per region (regions.mjs) where `regionStrengths` are not all 1, from
 *  the shapes the region carries (regions.mjs shapedRegion: its face's mesh) or else the template's. */
function residualOf(face, madeUp, region, size, regionStrengths) {
  const residual = new Float32Array(face.length);
  for (let i = 0; i < residual.length; i++) residual[i] = madeUp[i] - face[i];
  const weights = weightMap(region.shapes ?? TEMPLATE, regionStrengths, size);
  for (let base = 0; weights && base < residual.length; base += weights.length) {
    for (let i = 0; i < weights.length; i++) residual[base + i] *= weights[i];
  }
  return residual;
}

/** photo + strength x mask x residual for each made-up face {region, face, madeUp}, as apply does.
 *  The whole photo as the region (an aligned crop): the residual is upsampled onto every pixel
 *  (PyTorch's bilinear, align_corners=False). A face in a larger photo: the residual is warped back
 *  through the region's inverse transform and faded out by the feathered ellipse MASK. Pixels the
 *  masks do not reach (and alpha) keep their exact values. `regionStrengths` ({lips, eyes, cheeks, rest},
 *  regions.mjs): the residual weighted per region first, as `apply --regions`; null or all 1: not at all. */
export function compose(photo, faces, size, strength, regionStrengths = null) {
  const {width, height, data} = photo;
  const out = new ImageData(new Uint8ClampedArray(data), width, height);
  for (const {region, face, madeUp} of faces) {
    const residual = residualOf(face, madeUp, region, size, regionStrengths);
    if (isWholePhoto(region, width, height)) upsampleOnto(out.data, width, height, residual, size, strength);
    else warpOnto(out.data, width, height, region, residual, size, strength);
  }
  return out;
}

/** compose() for one made-up face {region, face, madeUp} of the frame on `source` (a 2D context), as
 *  a patch {box: [x0, y0, x1, y1], pixels: ImageData} to put over the frame: only the pixels of the
 *  region's footprint are read and changed, so a camera frame never goes through a full-frame
 *  getImageData. `under`: the patches of this frame's earlier faces; where one overlaps, this face goes
 *  on top of its pixels, so the patches put in order show every face. null: the region is outside.
 *  `regionStrengths`: as compose()'s. */
export function composePatch(source, {region, face, madeUp}, size, strength, under = [], regionStrengths = null) {
  const {width, height} = source.canvas;
  const whole = isWholePhoto(region, width, height);
  const box = whole ? [0, 0, width, height] : footprint(region, width, height);
  const [x0, y0, x1, y1] = box;
  if (x1 <= x0 || y1 <= y0) return null;
  const pixels = source.getImageData(x0, y0, x1 - x0, y1 - y0);
  for (const earlier of under) copyOverlap(earlier, {box, pixels});
  const residual = residualOf(face, madeUp, region, size, regionStrengths);
  if (whole) {
    upsampleOnto(pixels.data, width, height, residual, size, strength);
  } else {  // the same warp in the patch's own pixel grid (integer shift: the same pixel centres)
    const shifted = {...region, origin: [region.origin[0] - x0, region.origin[1] - y0]};
    warpOnto(pixels.data, pixels.width, pixels.height, shifted, residual, size, strength);
  }
  return {box, pixels};
}

/** The pixels of patch `from` where it overlaps patch `to`, into `to`. */
function copyOverlap(from, to) {
  const [ax0, ay0, ax1, ay1] = from.box, [bx0, by0, bx1, by1] = to.box;
  const [x0, y0, x1, y1] = [Math.max(ax0, bx0), Math.max(ay0, by0), Math.min(ax1, bx1), Math.min(ay1, by1)];
  const fromWidth = ax1 - ax0, toWidth = bx1 - bx0;
  for (let y = y0; y < y1; y++) {
    const row = from.pixels.data.subarray(4 * ((y - ay0) * fromWidth + x0 - ax0), 4 * ((y - ay0) * fromWidth + x1 - ax0));
    to.pixels.data.set(row, 4 * ((y - by0) * toWidth + x0 - bx0));
  }
}

/** The model on each region of a frame (`frame`: a 2D context holding it), each made-up face as
 *  composePatch's patch: {patches: [{box, pixels}], ms: {crop, maps, model, compose}}, the patches to put over
 *  the frame in order. `makeup`: {strength, regionStrengths (composePatch's), lookWeights (runModel's)}, read
 *  per frame. A region-input model gets each face's maps from the shapes its region carries (regionMapsFor;
 *  `maps` their time, 0 for another model). The camera's model stage, in a worker (worker.mjs) or in the page. */
export async function makeUpFaces(frame, model, regions, {strength, regionStrengths = null, lookWeights = null}) {
  const ms = {crop: 0, maps: 0, model: 0, compose: 0};
  const patches = [];
  for (const region of regions) {
    const cropping = performance.now();
    const face = faceTensor(frame.canvas, region, model.size);
    const drawing = performance.now();
    const maps = regionMapsFor(model, region);
    ms.crop += drawing - cropping;
    ms.maps += performance.now() - drawing;
    const {madeUp, ms: modelMs} = await runModel(model, face, lookWeights, maps);
    ms.model += modelMs;
    const composing = performance.now();
    const patch = composePatch(frame, {region, face, madeUp}, model.size, strength, patches, regionStrengths);
    if (patch) patches.push(patch);
    ms.compose += performance.now() - composing;
  }
  return {patches, ms};
}

/** The region's integer bounds [x0, y0, x1, y1] in the image, clipped to it. */
function footprint(region, width, height) {
  const corners = [[0, 0], [1, 0], [0, 1], [1, 1]].map(([s, t]) => [
    region.origin[0] + s * region.xAxis[0] + t * region.yAxis[0], region.origin[1] + s * region.xAxis[1] + t * region.yAxis[1]]);
  return [Math.max(0, Math.floor(Math.min(...corners.map((c) => c[0])))),
          Math.max(0, Math.floor(Math.min(...corners.map((c) => c[1])))),
          Math.min(width, Math.ceil(Math.max(...corners.map((c) => c[0])))),
          Math.min(height, Math.ceil(Math.max(...corners.map((c) => c[1]))))];
}

// upsampleOnto and warpOnto write into Uint8ClampedArrays, whose stores clamp and round half to even, as
// apply's torch.round (and ~25% faster than a Math.round of each value first).
function upsampleOnto(pixels, width, height, residual, size, strength) {
  const plane = size * size;
  const taps = (count) => {
    const index = new Int32Array(2 * count), weight = new Float32Array(count);
    for (let x = 0; x < count; x++) {
      const u = Math.max(0, (x + 0.5) * (size / count) - 0.5);
      const u0 = Math.min(Math.floor(u), size - 1);
      index[2 * x] = u0;
      index[2 * x + 1] = Math.min(u0 + 1, size - 1);
      weight[x] = u - u0;
    }
    return {index, weight};
  };
  const columns = taps(width), rows = taps(height);
  for (let y = 0; y < height; y++) {
    const v0 = rows.index[2 * y], v1 = rows.index[2 * y + 1], wv = rows.weight[y];
    for (let x = 0; x < width; x++) {
      const u0 = columns.index[2 * x], u1 = columns.index[2 * x + 1], wu = columns.weight[x];
      const at = 4 * (y * width + x);
      for (let c = 0; c < 3; c++) {
        const base = c * plane;
        const top = residual[base + v0 * size + u0] * (1 - wu) + residual[base + v0 * size + u1] * wu;
        const bottom = residual[base + v1 * size + u0] * (1 - wu) + residual[base + v1 * size + u1] * wu;
        pixels[at + c] = pixels[at + c] + strength * 255 * (top * (1 - wv) + bottom * wv);
      }
    }
  }
}

function warpOnto(pixels, width, height, region, residual, size, strength) {
  const plane = size * size, last = size - 1, scale = strength * 255;
  const {m: [m0, m1, m2, m3], e, f} = toCrop(region, size);
  const [x0, y0, x1, y1] = footprint(region, width, height);
  const [centreX, centreY] = MASK.centre, [radiusX, radiusY] = MASK.radii;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const cx = m0 * (x + 0.5) + m1 * (y + 0.5) + e, cy = m2 * (x + 0.5) + m3 * (y + 0.5) + f;
      const dx = (cx / size - centreX) / radiusX, dy = (cy / size - centreY) / radiusY;
      const distance2 = dx * dx + dy * dy;
      if (distance2 >= 1) continue;  // outside the mask's ellipse: weight 0
      const weight = smoothstep((1 - Math.sqrt(distance2)) / MASK.feather);
      // Bilinear, zero outside the crop (grid_sample's zeros padding): the taps and their weights once,
      // for the three channels.
      const u = cx - 0.5, v = cy - 0.5, u0 = Math.floor(u), v0 = Math.floor(v), wu = u - u0, wv = v - v0;
      const left = u0 >= 0 && u0 <= last, right = u0 + 1 >= 0 && u0 + 1 <= last;
      const top = v0 >= 0 && v0 <= last, bottom = v0 + 1 >= 0 && v0 + 1 <= last;
      const i00 = v0 * size + u0, i01 = i00 + size;
      const gain = scale * weight, at = 4 * (y * width + x);
      for (let c = 0, base = 0; c < 3; c++, base += plane) {
        const a = top && left ? residual[base + i00] : 0, b = top && right ? residual[base + i00 + 1] : 0;
        const g = bottom && left ? residual[base + i01] : 0, h = bottom && right ? residual[base + i01 + 1] : 0;
        pixels[at + c] = pixels[at + c] + gain * ((a * (1 - wu) + b * wu) * (1 - wv) + (g * (1 - wu) + h * wu) * wv);
      }
    }
  }
}

/** Batch-1 model latency: warm up, then run until both minRuns runs and minSeconds seconds are reached.
 *  `lookWeights`, `regions`: runModel's. */
export async function timeModel(model, face, {warmup = 5, minRuns = 30, minSeconds = 2, lookWeights = null,
                                              regions = null} = {}) {
  for (let i = 0; i < warmup; i++) await runModel(model, face, lookWeights, regions);
  const times = [];
  const started = performance.now();
  while (times.length < minRuns || performance.now() - started < minSeconds * 1000) {
    times.push((await runModel(model, face, lookWeights, regions)).ms);
  }
  return times;
}
