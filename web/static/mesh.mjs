// The 468-point face mesh on a square of the frame: faces/mesh.py in JavaScript. MediaPipe's
// face_landmark.tflite (Apache-2.0), itself in LiteRT.js or as ONNX (tools/face_models.py --network
// mesh) in onnxruntime-web, the same
// regions (a square 1.5x the face's box, eyes level) and the same crop, warped straight from
// the frame on a canvas: only the 192 x 192 crop's pixels are read back.
import {MOUTH_HALF_SIDE} from './faces.mjs';

export const MESH_SIZE = 192;
export const REGION_SCALE = 1.5;   // MediaPipe's RectTransformationCalculator: scale 1.5, square_long
export const MIN_PRESENCE = 0.5;   // on the sigmoid of the face flag (face_landmark_cpu.pbtxt)
// Canonical mesh indices (MediaPipe's face_mesh_connections.py). "Right" is the subject's right:
// the image's left eye.
export const RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246];
export const LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466];
export const MOUTH_CORNERS = [61, 291];
export const EYE_LINE = [33, 263];  // the outer eye corners: the next region is levelled on them
// faces/alignment.py's MESH_TEMPLATE, [index, x, y]: where seven mesh points sit in the crop the
// detector's keypoints give (fractions of its side), fitted once (`python -m tools.tracking_metrics --fit`).
export const MESH_TEMPLATE = [[33, 0.3271, 0.4771], [133, 0.4377, 0.4797], [362, 0.5763, 0.4763], [263, 0.6857, 0.4681],
                              [1, 0.5117, 0.6229], [61, 0.3917, 0.7073], [291, 0.6358, 0.6988]];
export const EYE_CORNERS = [33, 133, 362, 263];
const POINTS = 468;

/** The mesh network from `url`: MediaPipe's face_landmark.tflite itself (LiteRT.js) or its ONNX
 *  rewrite (onnxruntime-web); both take [1, 192, 192, 3] and give the 1404 coordinates and the flag. */
export async function loadMesh(url, {threads} = {}) {
  // network.mjs (the runtimes) is loaded with the first network: the geometry here runs without them
  // (tracking_step.mjs in plain Node, web/test/).
  const {openNetwork} = await import('./network.mjs');
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the face mesh ${url} could not be fetched (HTTP ${response.status}); run \`make setup\``);
  const network = await openNetwork(url, new Uint8Array(await response.arrayBuffer()), {threads});
  const crop = new OffscreenCanvas(MESH_SIZE, MESH_SIZE);
  return {network, context: crop.getContext('2d', {willReadFrequently: true}),
          tensor: new Float32Array(MESH_SIZE * MESH_SIZE * 3)};
}

const eyeAngle = ([lx, ly], [rx, ry]) => Math.atan2(ry - ly, rx - lx);

/** The first mesh region of a detection {box, leftEye, rightEye}: its box's long side x 1.5, eyes level. */
export function regionFromFace(face) {
  const [x0, y0, x1, y1] = face.box;
  return {centre: [(x0 + x1) / 2, (y0 + y1) / 2], side: REGION_SCALE * Math.max(x1 - x0, y1 - y0),
          angle: eyeAngle(face.leftEye, face.rightEye)};
}

/** The next region from a mesh (468 [x, y] in image pixels): the points' box turned by the eye
 *  line, its long side x 1.5. */
export function regionFromLandmarks(points) {
  const angle = eyeAngle(points[EYE_LINE[0]], points[EYE_LINE[1]]);
  const cos = Math.cos(angle), sin = Math.sin(angle);
  let alongMin = Infinity, alongMax = -Infinity, acrossMin = Infinity, acrossMax = -Infinity;
  for (const [x, y] of points) {
    const along = x * cos + y * sin, across = y * cos - x * sin;
    alongMin = Math.min(alongMin, along); alongMax = Math.max(alongMax, along);
    acrossMin = Math.min(acrossMin, across); acrossMax = Math.max(acrossMax, across);
  }
  const u = (alongMin + alongMax) / 2, v = (acrossMin + acrossMax) / 2;
  return {centre: [u * cos - v * sin, u * sin + v * cos],
          side: REGION_SCALE * Math.max(alongMax - alongMin, acrossMax - acrossMin), angle};
}

/** Crop -> image: image = linear x crop + offset (continuous pixel coordinates, as faces/mesh.py). */
function cropToImage({centre, side, angle}) {
  const k = side / MESH_SIZE, cos = Math.cos(angle) * k, sin = Math.sin(angle) * k;
  const half = MESH_SIZE / 2;
  return {linear: [cos, -sin, sin, cos], offset: [centre[0] - (cos - sin) * half, centre[1] - (sin + cos) * half]};
}

/** The mesh on one region of the canvas: {points: 468 [x, y] in image pixels, presence in [0, 1]}. */
export async function runMesh(mesh, canvas, region) {
  const {linear: [a, b, c, d], offset: [e, f]} = cropToImage(region);
  const det = a * d - b * c;  // the inverse maps the frame onto the crop
  const [ia, ib, ic, id] = [d / det, -b / det, -c / det, a / det];
  const context = mesh.context;
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = '#000';
  context.fillRect(0, 0, MESH_SIZE, MESH_SIZE);
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = 'low';  // bilinear, as PIL's affine transform in faces/mesh.py
  context.setTransform(ia, ic, ib, id, -(ia * e + ib * f), -(ic * e + id * f));
  context.drawImage(canvas, 0, 0);
  context.setTransform(1, 0, 0, 1, 0, 0);
  const pixels = context.getImageData(0, 0, MESH_SIZE, MESH_SIZE).data;
  const image = mesh.tensor;
  for (let i = 0, j = 0; i < pixels.length; i += 4) {
    image[j++] = pixels[i] / 255;
    image[j++] = pixels[i + 1] / 255;
    image[j++] = pixels[i + 2] / 255;
  }
  const outputs = await mesh.network.run(image);
  // The two outputs by their sizes (the formats list them in different orders).
  const raw = outputs.find((output) => output.length === 3 * POINTS), flag = outputs.find((output) => output.length === 1);
  const points = new Array(POINTS);
  for (let i = 0; i < POINTS; i++) {
    const x = raw[3 * i], y = raw[3 * i + 1];
    points[i] = [a * x + b * y + e, c * x + d * y + f];
  }
  const logit = Math.min(80, Math.max(-80, flag[0]));
  return {points, presence: 1 / (1 + Math.exp(-logit))};
}

/** The model's crop {origin, xAxis, yAxis} from a mesh (468 [x, y] in image pixels), as
 *  Alignment.from_mesh: the least-squares similarity from MESH_TEMPLATE onto those mesh points, its
 *  side grown to FFHQ's minimum for the eye-to-mouth distance (a turned face's foreshortened eyes). */
export function alignMesh(points) {
  const count = MESH_TEMPLATE.length;
  let u0 = 0, v0 = 0, x0 = 0, y0 = 0;
  for (const [i, u, v] of MESH_TEMPLATE) {
    u0 += u / count; v0 += v / count; x0 += points[i][0] / count; y0 += points[i][1] / count;
  }
  let norm = 0, cos = 0, sin = 0;
  for (const [i, u, v] of MESH_TEMPLATE) {
    const du = u - u0, dv = v - v0, dx = points[i][0] - x0, dy = points[i][1] - y0;
    norm += du * du + dv * dv; cos += du * dx + dv * dy; sin += du * dy - dv * dx;
  }
  [cos, sin] = [cos / norm, sin / norm];  // scale x cos(angle), scale x sin(angle)
  const origin = [x0 - u0 * cos + v0 * sin, y0 - u0 * sin - v0 * cos];
  const centre = [origin[0] + (cos - sin) / 2, origin[1] + (sin + cos) / 2];
  const mean = (indices, axis) => indices.reduce((sum, i) => sum + points[i][axis], 0) / indices.length;
  const eyeToMouth = Math.hypot(mean(MOUTH_CORNERS, 0) - mean(EYE_CORNERS, 0), mean(MOUTH_CORNERS, 1) - mean(EYE_CORNERS, 1));
  const side = Math.max(Math.hypot(cos, sin), 2 * MOUTH_HALF_SIDE * eyeToMouth), angle = Math.atan2(sin, cos);
  const x = [Math.cos(angle) * side / 2, Math.sin(angle) * side / 2], y = [-x[1], x[0]];
  return {origin: [centre[0] - x[0] - y[0], centre[1] - x[1] - y[1]], xAxis: [2 * x[0], 2 * x[1]], yAxis: [2 * y[0], 2 * y[1]]};
}
