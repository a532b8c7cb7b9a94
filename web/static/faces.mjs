// Faces and their alignment in the browser: faces/ in JavaScript. BlazeFace full range
// (MediaPipe, Apache-2.0) as ONNX (tools/face_models.py), the same letterboxing, tiles, decoding,
// weighted NMS and FFHQ-style alignment, so the page crops the faces `python -m apply` crops.

export const DETECTOR_SIZE = 192;
const CELLS = DETECTOR_SIZE / 4;  // one anchor per cell of a 48 x 48 grid
// FFHQ's square: half its side is the larger of 2 x the eye distance and 1.8 x the eye-to-mouth one.
export const EYE_HALF_SIDE = 2.0, MOUTH_HALF_SIDE = 1.8;
// The detector's numbers (the score a detection needs, the overlap that merges two, the search bounds):
// faces/detection.json (faces.detection reads it too), served beside the page
// as detection.json and fetched with the detector's network.
const SEARCH_BOUNDS = new URL('./detection.json', import.meta.url);

/** An image of a shape that cannot hold a face (faces.detection.UnsearchableImage): the message describes
 *  the shape; the caller adds the file. */
export class UnsearchableImage extends Error {}

/** {network, search}: BlazeFace's network from `url`, and the search bounds every detectFaces reads. */
export async function loadDetector(url, {threads} = {}) {
  // network.mjs (the runtimes) is loaded with the first network: the geometry here runs without them
  // (tracking_step.mjs in plain Node, web/test/).
  const {openNetwork} = await import('./network.mjs');
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the face detector ${url} could not be fetched (HTTP ${response.status}); run \`make setup\``);
  const bounds = await fetch(SEARCH_BOUNDS);
  if (!bounds.ok) {
    throw new Error(`the face detector's search bounds ${SEARCH_BOUNDS.pathname} could not be fetched ` +
                    `(HTTP ${bounds.status})`);
  }
  return {network: await openNetwork(url, new Uint8Array(await response.arrayBuffer()), {threads}),
          search: await bounds.json()};
}

/** Python's round (and numpy's): a half goes to the even neighbour, so both languages plan the same pixels. */
function roundHalfEven(value) {
  const floor = Math.floor(value);
  return value - floor === 0.5 ? floor + (floor % 2) : Math.round(value);
}

/** faces.detection.search_plan, on the same numbers (`bounds`: detection.json): {scale, regions}. The image is
 *  searched shrunk by `scale` (1: as it is; long side at most max_search_side), as a whole and, when it is
 *  landscape or portrait (and `tiles`), in overlapping squares of its short side ([x0, y0, x1, y1] in the shrunk
 *  image's pixels): at most 2 x max_aspect passes. Throws UnsearchableImage for a shape that cannot hold a face. */
export function searchPlan(width, height, bounds, {tiles = true} = {}) {
  let short = Math.min(width, height), long = Math.max(width, height);
  if (short < bounds.min_face_pixels) {
    throw new UnsearchableImage(`the image is ${width}x${height} pixels, too small to hold a face (its short ` +
                                `side needs at least ${bounds.min_face_pixels})`);
  }
  if (long > bounds.max_aspect * short) {
    throw new UnsearchableImage(`the image is ${width}x${height} pixels, ${roundHalfEven(long / short)} times as ` +
                                `long as it is wide: more than the ${bounds.max_aspect}:1 a photo of a face can be`);
  }
  const scale = Math.min(1, bounds.max_search_side / long);
  if (scale < 1) [width, height] = [roundHalfEven(width * scale), roundHalfEven(height * scale)];
  [short, long] = [Math.min(width, height), Math.max(width, height)];
  const regions = [[0, 0, width, height]];
  if (tiles && long > bounds.tile_above_aspect * short) {
    const count = Math.ceil((2 * (long - short)) / short) + 1;
    const step = (long - short) / (count - 1);  // numpy's linspace: k x step, the last one exact
    for (let k = 0; k < count; k++) {
      const start = k === count - 1 ? long - short : roundHalfEven(k * step);
      regions.push(width > height ? [start, 0, start + short, short] : [0, start, short, start + short]);
    }
  }
  return {scale, regions};
}

/** One letterboxed pass over a region [x0, y0, x1, y1] of the canvas shrunk by `scale` (searchPlan's):
 *  detections in the canvas's pixels. */
async function detectIn(detector, canvas, [x0, y0, x1, y1], scale = 1) {
  const width = x1 - x0, height = y1 - y0, side = Math.max(width, height);
  const pad = [Math.floor((side - width) / 2), Math.floor((side - height) / 2)];
  const toInput = DETECTOR_SIZE / side;
  const square = new OffscreenCanvas(DETECTOR_SIZE, DETECTOR_SIZE);
  const context = square.getContext('2d', {willReadFrequently: true});
  context.fillStyle = '#000';
  context.fillRect(0, 0, DETECTOR_SIZE, DETECTOR_SIZE);
  context.imageSmoothingQuality = 'high';
  context.drawImage(canvas, x0 / scale, y0 / scale, width / scale, height / scale, pad[0] * toInput, pad[1] * toInput,
                    width * toInput, height * toInput);
  const pixels = context.getImageData(0, 0, DETECTOR_SIZE, DETECTOR_SIZE).data;
  const image = new Float32Array(DETECTOR_SIZE * DETECTOR_SIZE * 3);
  for (let i = 0, j = 0; i < pixels.length; i += 4) {
    image[j++] = pixels[i] / 127.5 - 1;
    image[j++] = pixels[i + 1] / 127.5 - 1;
    image[j++] = pixels[i + 2] / 127.5 - 1;
  }
  const [regressors, classificators] = await detector.network.run(image);
  const shift = [x0 - pad[0], y0 - pad[1]];
  const found = [];
  for (let i = 0; i < CELLS * CELLS; i++) {
    const logit = Math.min(80, Math.max(-80, classificators[i]));
    const score = 1 / (1 + Math.exp(-logit));
    if (!(score > detector.search.min_score)) continue;
    const anchor = [((i % CELLS) + 0.5) / CELLS, (Math.floor(i / CELLS) + 0.5) / CELLS];
    const at = (k, axis) => ((regressors[16 * i + k] / DETECTOR_SIZE + anchor[axis]) * side + shift[axis]) / scale;
    const centre = [at(0, 0), at(1, 1)];
    const size = [2, 3].map((k) => (regressors[16 * i + k] / DETECTOR_SIZE) * side / scale);
    const points = [];
    for (let k = 0; k < 6; k++) points.push([at(4 + 2 * k, 0), at(5 + 2 * k, 1)]);
    found.push({box: [centre[0] - size[0] / 2, centre[1] - size[1] / 2, centre[0] + size[0] / 2, centre[1] + size[1] / 2],
                points, score});
  }
  return found;
}

export function boxIou(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (box) => (box[2] - box[0]) * (box[3] - box[1]);
  return (w * h) / Math.max(area(a) + area(b) - w * h, 1e-9);
}

/** MediaPipe's weighted NMS: overlapping detections are averaged by score, not dropped. */
function weightedNms(detections, iou) {
  let remaining = [...detections].sort((a, b) => b.score - a.score);
  const kept = [];
  while (remaining.length) {
    const best = remaining[0];
    const group = remaining.filter((d) => boxIou(best.box, d.box) > iou);
    remaining = remaining.filter((d) => !(boxIou(best.box, d.box) > iou));
    const total = group.reduce((sum, d) => sum + d.score, 0);
    const mean = (pick) => pick(group[0]).map((_, k) => group.reduce((sum, d) => sum + pick(d)[k] * d.score, 0) / total);
    const points = best.points.map((_, k) => mean((d) => d.points[k]));
    kept.push({box: mean((d) => d.box), score: best.score, leftEye: points[0], rightEye: points[1],
               nose: points[2], mouth: points[3]});
  }
  return kept;
}

/** Faces in the canvas, best first: the whole image letterboxed, plus overlapping square tiles of
 *  its short side for a landscape or portrait photo (a small face covers more of the 192 pixels), in
 *  the passes searchPlan lays out on the detector's bounds. `tiles: false`: the whole image's pass alone
 *  (faces of about a tenth of its long side and up). Throws UnsearchableImage, before any pass, for a
 *  shape that cannot hold a face. */
export async function detectFaces(detector, canvas, {tiles = true} = {}) {
  const {scale, regions} = searchPlan(canvas.width, canvas.height, detector.search, {tiles});
  const found = [];
  for (const region of regions) found.push(...await detectIn(detector, canvas, region, scale));
  return weightedNms(found, detector.search.nms_iou);
}

/** Faces near boxes seen a few frames ago (a worker's detection, tracking.mjs): one pass on a square of
 *  `reach` x each box's side about its centre, clipped to the canvas, instead of the whole frame and its
 *  tiles (1 pass against 4 for a 1280x720 frame). */
export async function detectAround(detector, canvas, boxes, reach = 6) {
  const {width, height} = canvas;
  const found = [];
  for (const [x0, y0, x1, y1] of boxes) {
    const half = (reach * Math.max(x1 - x0, y1 - y0)) / 2, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const region = [Math.max(0, Math.floor(cx - half)), Math.max(0, Math.floor(cy - half)),
                    Math.min(width, Math.ceil(cx + half)), Math.min(height, Math.ceil(cy + half))];
    if (region[2] - region[0] >= 2 && region[3] - region[1] >= 2) found.push(...await detectIn(detector, canvas, region));
  }
  return weightedNms(found, detector.search.nms_iou);
}

/** The FFHQ-style square of one face (Karras et al. 2019): {origin, xAxis, yAxis} in image pixels,
 *  the axes spanning the crop's full width and height. */
export function alignFace(face) {
  const [lx, ly] = face.leftEye, [rx, ry] = face.rightEye, [mx, my] = face.mouth;
  const eye = [(lx + rx) / 2, (ly + ry) / 2];
  const eyeToEye = [rx - lx, ry - ly], eyeToMouth = [mx - eye[0], my - eye[1]];
  let x = [eyeToEye[0] + eyeToMouth[1], eyeToEye[1] - eyeToMouth[0]];
  const length = Math.max(Math.hypot(...eyeToEye) * EYE_HALF_SIDE, Math.hypot(...eyeToMouth) * MOUTH_HALF_SIDE) /
    Math.hypot(...x);
  x = [x[0] * length, x[1] * length];
  const y = [-x[1], x[0]];
  const centre = [eye[0] + 0.1 * eyeToMouth[0], eye[1] + 0.1 * eyeToMouth[1]];
  return {origin: [centre[0] - x[0] - y[0], centre[1] - x[1] - y[1]], xAxis: [2 * x[0], 2 * x[1]],
          yAxis: [2 * y[0], 2 * y[1]]};
}

/** An axis-aligned square {x, y, size} as a region. */
export function boxRegion({x, y, size}) {
  return {origin: [x, y], xAxis: [size, 0], yAxis: [0, size]};
}
