// Per-region strength (lips, eyes, cheeks, the rest of the face): faces/region_weights.py in JavaScript, on
// the same definition (faces/regions.json, which the server serves as regions.json). Each region is a union
// of soft ellipses in the model's crop, placed from the face's mesh (or, for a face without one, the
// definition's template); weightMap() turns them and a strength per region into one weight per crop pixel,
// rest + sum_r (strength_r - rest) x share_r, each region's share its mask over what the regions before it
// left (lips, then eyes, then cheeks), which makeup.mjs
// multiplies into the residual before it goes back onto the photo: no model run. Every strength at 1 is no
// weighting at all (weightMap gives null). regionMasks() draws each region's own mask instead, the maps a
// region-input network reads beside the face (makeup.mjs feeds them). web/test/regions.test.mjs checks these
// numbers against Python's.
import DEFINITION from './regions.json' with {type: 'json'};

export {DEFINITION};
export const REGION_NAMES = DEFINITION.regions;
export const REMAINDER = DEFINITION.remainder;
export const MIN_REGION_STRENGTH = DEFINITION.strength.min, MAX_REGION_STRENGTH = DEFINITION.strength.max;
export const NEUTRAL = Object.freeze(Object.fromEntries(REGION_NAMES.map((name) => [name, 1])));
export const TEMPLATE = DEFINITION.template;
const CONTOURS = DEFINITION.contours, CHEEK = DEFINITION.cheek;

/** An eye ring's upper lid, inner corner to outer corner (the rings start at the outer corner). */
export function upperLid(ring) {
  return [...ring.slice(DEFINITION.inner_corner), ring[0]];
}

/** The ellipse centred on the box of the spec's contours along its axis, of the box's proportions and just large
 *  enough to hold every point, then grown: [centre x, centre y, radius along, radius across, angle, feather] in
 *  fractions of the crop's side. */
function boxEllipse(spec, points) {
  const [start, end] = spec.axis.map((index) => points[index]);
  const angle = Math.atan2(end[1] - start[1], end[0] - start[0]), cos = Math.cos(angle), sin = Math.sin(angle);
  const projected = spec.box.flatMap((name) => CONTOURS[name].map((index) => {
    const [x, y] = points[index];
    return [x * cos + y * sin, x * -sin + y * cos];
  }));
  const alongs = projected.map(([along]) => along), acrosses = projected.map(([, across]) => across);
  const midAlong = (Math.min(...alongs) + Math.max(...alongs)) / 2, midAcross = (Math.min(...acrosses) + Math.max(...acrosses)) / 2;
  const halfAlong = (Math.max(...alongs) - Math.min(...alongs)) / 2, halfAcross = (Math.max(...acrosses) - Math.min(...acrosses)) / 2;
  const reach = Math.max(...projected.map(([along, across]) => Math.sqrt(
    ((along - midAlong) / halfAlong) ** 2 + ((across - midAcross) / halfAcross) ** 2)));
  return [midAlong * cos + midAcross * -sin, midAlong * sin + midAcross * cos,
          halfAlong * reach * spec.grow[0], halfAcross * reach * spec.grow[1], angle, spec.feather];
}

/** train/portraits.py's blush: below the eye, toward the mouth corner and a little outward. */
function cheekEllipse(spec, points) {
  const lid = upperLid(CONTOURS[spec.cheek]);
  const eye = [0, 1].map((axis) => lid.reduce((sum, index) => sum + points[index][axis], 0) / lid.length);
  const first = points[lid[0]], last = points[lid[lid.length - 1]];
  const width = Math.hypot(last[0] - first[0], last[1] - first[1]);
  const outward = [(last[0] - first[0]) / Math.max(width, 1e-9), (last[1] - first[1]) / Math.max(width, 1e-9)];
  const corner = points[spec.corner];
  const centre = [0, 1].map((axis) => eye[axis] + CHEEK.toward_corner * (corner[axis] - eye[axis]) +
                                      CHEEK.outward * width * outward[axis]);
  return [centre[0], centre[1], CHEEK.radii[0] * width, CHEEK.radii[1] * width, 0, CHEEK.feather];
}

/** Each region's ellipses from a face's mesh: 468 [x, y] in fractions of the crop's side. */
export function regionShapes(points) {
  return Object.fromEntries(Object.entries(DEFINITION.shapes).map(([name, specs]) => [
    name, specs.map((spec) => (spec.box ? boxEllipse(spec, points) : cheekEllipse(spec, points)))]));
}

/** Image points (468 [x, y] pixels) in fractions of a crop {origin, xAxis, yAxis}. */
export function pointsInCrop({origin, xAxis, yAxis}, points) {
  const det = xAxis[0] * yAxis[1] - yAxis[0] * xAxis[1];
  return points.map(([x, y]) => {
    const dx = x - origin[0], dy = y - origin[1];
    return [(dx * yAxis[1] - dy * yAxis[0]) / det, (dy * xAxis[0] - dx * xAxis[1]) / det];
  });
}

/** The crop with its face's region shapes (from its mesh landmarks, in image pixels) attached, for
 *  makeup.mjs; a crop without shapes gets the template's. */
export function shapedRegion(region, landmarks) {
  return landmarks ? {...region, shapes: regionShapes(pointsInCrop(region, landmarks))} : region;
}

export function isNeutral(strengths) {
  return !strengths || REGION_NAMES.every((name) => strengths[name] === 1);
}

/** The crop pixels an ellipse's mask can reach, [row from, row to, column from, column to]: beyond (1 + feather) x
 *  its longer radius it is exactly 0, so only these are computed (a few % of the crop). */
function reachOf([centreX, centreY, radiusAlong, radiusAcross, , feather], size) {
  const reach = (1 + feather) * Math.max(radiusAlong, radiusAcross);
  return [Math.max(0, Math.floor((centreY - reach) * size)), Math.min(size, Math.ceil((centreY + reach) * size) + 1),
          Math.max(0, Math.floor((centreX - reach) * size)), Math.min(size, Math.ceil((centreX + reach) * size) + 1)];
}

/** One ellipse's mask, max'ed into `mask` (size x size), over the pixels it can reach ([rows, columns]); pixel
 *  (row, column) at mask[(row x size + column) x stride + offset] (stride 1: a plane of its own; K and the channel:
 *  one of K interleaved maps). */
function maxEllipseInto(mask, [centreX, centreY, radiusAlong, radiusAcross, angle, feather], size, [row0, row1, column0, column1],
                        stride = 1, offset = 0) {
  const cos = Math.cos(angle), sin = Math.sin(angle);
  for (let row = row0; row < row1; row++) {
    const dv = (row + 0.5) / size - centreY;
    for (let column = column0; column < column1; column++) {
      const du = (column + 0.5) / size - centreX;
      const along = (du * cos + dv * sin) / radiusAlong, across = (dv * cos - du * sin) / radiusAcross;
      const ramp = Math.min(1, Math.max(0, (1 + feather - Math.sqrt(along * along + across * across)) / feather));
      const value = ramp * ramp * (3 - 2 * ramp), at = (row * size + column) * stride + offset;
      if (value > mask[at]) mask[at] = value;
    }
  }
}

/** size x size weights (Float32Array, row-major) at the crop's pixel centres, as faces.region_weights.weight_map:
 *  rest + sum_r (strength_r - rest) x share_r, each region's share its mask over what the regions before it left
 *  (REGION_NAMES' order). null where every strength is 1 (the weights would all be exactly 1). `shapes`:
 *  regionShapes' (or the template's). */
export function weightMap(shapes, strengths, size) {
  if (isNeutral(strengths)) return null;
  const rest = strengths[REMAINDER], weights = new Float32Array(size * size).fill(rest);
  const exact = new Float64Array(size * size).fill(rest), left = new Float64Array(size * size).fill(1);
  const mask = new Float64Array(size * size);
  for (const name of REGION_NAMES) {
    if (name === REMAINDER) continue;
    const boxes = shapes[name].map((ellipse) => reachOf(ellipse, size)), gain = strengths[name] - rest;
    const [row0, row1, column0, column1] = [Math.min(...boxes.map((box) => box[0])), Math.max(...boxes.map((box) => box[1])),
                                            Math.min(...boxes.map((box) => box[2])), Math.max(...boxes.map((box) => box[3]))];
    for (let row = row0; row < row1; row++) mask.fill(0, row * size + column0, row * size + column1);
    shapes[name].forEach((ellipse, k) => maxEllipseInto(mask, ellipse, size, boxes[k]));
    for (let row = row0; row < row1; row++) {  // outside the box the share is 0: nothing changes
      for (let i = row * size + column0, end = row * size + column1; i < end; i++) {
        const share = mask[i] * left[i];
        exact[i] += gain * share;
        left[i] -= share;
        weights[i] = exact[i];
      }
    }
  }
  return weights;
}

/** The maps a region-input network reads beside the face (the default of `python -m train`), in the order of its
 *  `regions` input: every region but the rest of the face (train/region_maps.py REGION_INPUTS). */
export const REGION_INPUTS = Object.freeze(REGION_NAMES.filter((name) => name !== REMAINDER));

/** Each named region's own soft mask at the crop's size x size pixel centres, as faces.region_weights.region_masks:
 *  the largest of its ellipses' (not weightMap's shares), in [0, 1]; the `regions` input of a region-input network,
 *  as one Float32Array in the file's layout: K x size x size (channelsLast false: the .onnx's NCHW) or size x size x
 *  K (the .tflite's NHWC). `shapes` null (a face without a mesh): all 0, what training gives a face the mesh
 *  missed, not the template's. Only the pixels each ellipse can reach are computed. */
export function regionMasks(shapes, names, size, {channelsLast = false} = {}) {
  const count = names.length, masks = new Float32Array(count * size * size);
  if (!shapes) return masks;
  names.forEach((name, k) => {
    if (!shapes[name]) throw new Error(`no region '${name}' in the face's shapes (${Object.keys(shapes).join(', ')})`);
    // The largest of float32-rounded values is the float32 of the largest (rounding keeps the order): Python's
    // float64 masks cast to float32 at the end, to the bit.
    const [mask, stride, offset] = channelsLast ? [masks, count, k] : [masks.subarray(k * size * size, (k + 1) * size * size), 1, 0];
    for (const ellipse of shapes[name]) maxEllipseInto(mask, ellipse, size, reachOf(ellipse, size), stride, offset);
  });
  return masks;
}
