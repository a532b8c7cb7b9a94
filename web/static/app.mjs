// The page: wires makeup.mjs and faces.mjs to the controls. URL parameters: ?model=FILE (an .onnx file of the
// exported set, run by onnxruntime-web, or the .tflite, run by LiteRT.js together with the face mesh's own
// .tflite; default: the one config.json names), ?threads=N (wasm threads, default the runtime's), ?look=CHOICE
// (a file of several looks: the look to start with, by name or index, or a blend NAME=W,...: looks.mjs) and
// ?modelWorker=1 or 0 (the camera's model stage in its own worker, or in the page's frame loop; default: the
// worker for an .onnx where the browser reports 4 cores or more, see MODEL_WORKER_CORES; never for the .tflite).
// A region-input file (its `regions` input) gets each face's region maps, drawn from the same mesh run that
// placed the face's crop and its region strengths (makeup.mjs regionMapsFor); a face without a mesh, all 0.
// `window.tinybeauty` exposes the state and a few calls for the tests and the benchmark, which
// feed photos through the same file input a person uses.
import {CameraLoop} from './camera.mjs';
import {UnsearchableImage, alignFace, boxRegion, detectFaces, loadDetector} from './faces.mjs';
import {
  InputError, MASK, MAX_STRENGTH, clampBox, compose, decodePhoto, defaultBox, faceTensor, loadModel,
  pixelsOf, regionMapsFor, runModel, timeModel, wholePhoto,
} from './makeup.mjs';
import {loadMesh} from './mesh.mjs';
import {LOOKS_FILE, blendWeights, checkCatalogue, checkRegionInputs, describe, lookWeights} from './looks.mjs';
import {formatOf} from './network.mjs';
import {MAX_REGION_STRENGTH, MIN_REGION_STRENGTH, NEUTRAL, REGION_NAMES} from './regions.mjs';
import {FaceTracker, STILL_MAX_FACES, cropShapes, stillFaces} from './tracking.mjs';
import {ModelStage, PageWorker, searchFor} from './workers.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let modelFile = params.get('model');  // null: the default, asked of the server (defaultModelFile)
const threads = Number(params.get('threads')) || 0;
// On 2 cores the model's worker measured slower than the frame loop doing it (docs/web.md): the page, that
// worker, the detector's worker and the browser's own compositing and capture then share two cores.
// LiteRT.js cannot start in the page's (module) workers: it loads its wasm glue with importScripts, which
// module workers lack. Its threads run the model in the frame loop instead.
const MODEL_WORKER_CORES = 4;
const useModelWorker = () => (params.has('modelWorker') ? params.get('modelWorker') === '1' :
  formatOf(modelFile) === 'onnx' && (navigator.hardwareConcurrency ?? 1) >= MODEL_WORKER_CORES);

// mode: 'faces' (found by the detector, aligned as apply does), 'whole' (the photo is an aligned
// face crop: apply --aligned) or 'box' (one square placed by hand). On "automatic" each photo
// picks one; the "Faces" menu fixes one (state.choice).
// The camera (`webcam`: its stream) follows faces with `tracker` and counts its frames in `frames`;
// `camera` holds the last frame's {index, faces, regions, ms, fps, ...}, `onFrame` a test's observer;
// `workers` the camera's detector and model workers (workers.mjs), started with the first camera.
const state = {model: null, detector: null, mesh: null, tracker: null, photo: null, pixels: null, name: '', mode: null,
               choice: null, box: null, regions: [], faces: [], result: null, strength: 1, modelMs: null,
               regionStrengths: {...NEUTRAL},  // the region sliders' (regions.mjs): lips, eyes, cheeks, rest
               // A file of several looks: its catalogue (looks.json's entries, checked against the file), the
               // weights its look input gets (looks.mjs; null for one look) and the swatches' and blend's state.
               looks: null, lookWeights: null, look: {base: 0, other: 1, t: 0},
               stills: null, alignedBy: [],  // the photos' face tracker (unsmoothed), how each face was aligned
               detectMs: null, frameMs: null, webcam: null, loop: null, frames: 0, camera: null, onFrame: null,
               workers: {detect: null, makeUp: null}};

function setState(name) {
  document.body.dataset.state = name;
}

function setStatus(text) {
  $('status').textContent = text;
}

function showMessage(text, kind = 'error') {
  const message = $('message');
  message.textContent = text;
  message.className = kind;
  message.hidden = !text;
}

function fail(error) {
  console.error(error);
  showMessage(error instanceof InputError ? error.message : `Something went wrong: ${error.message || error}`);
  setState('error');  // what was on screen stays there
  setStatus('');
}

function formatBytes(bytes) {
  return `${bytes.toLocaleString()} bytes (${(bytes / 1000).toFixed(1)} KB)`;
}

// The server (web/server.py) names the default model from the formats table, so the page never
// spells a file name of its own; a bundle for a static host carries the same config.json.
async function defaultModelFile() {
  const response = await fetch('config.json');
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  return (await response.json()).model;
}

/** The set's looks.json (export/manifest.py LOOKS_FILE, beside the files; the server serves it), parsed; null
 *  where the set has none (a set exported before it). */
async function fetchCatalogue() {
  const response = await fetch(`model/${LOOKS_FILE}`);
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${LOOKS_FILE}: HTTP ${response.status}`);
  try {
    return await response.json();
  } catch (error) {
    throw new Error(`${LOOKS_FILE} is not JSON (${error.message}): re-export the set (\`make export\`)`);
  }
}

function refuseModel(text, error) {
  $('model-name').textContent = modelFile ?? 'config.json';
  showMessage(text);
  setState('error');
  setStatus('');
  throw error;
}

async function init() {
  try {
    modelFile ??= await defaultModelFile();
    state.model = await loadModel(`model/${modelFile}`, {threads});
  } catch (error) {
    refuseModel(`The model could not be loaded: ${error.message}`, error);
  }
  let catalogue = null;
  try {
    catalogue = await fetchCatalogue();
    state.looks = checkCatalogue(catalogue, state.model.lookCount, modelFile);
    if (state.model.lookCount) addLookControls(params.get('look'));
  } catch (error) {
    refuseModel(`The model's looks could not be read: ${error.message}`, error);
  }
  try {
    // A region-input file: which maps, in its channel order (looks.json's region_inputs, checked against the file)
    state.model.regionNames = checkRegionInputs(catalogue, state.model.regionCount, modelFile);
  } catch (error) {
    refuseModel(`The model's region maps could not be set up: ${error.message}`, error);
  }
  setStatus('Loading the face detector…');
  try {
    state.detector = await loadDetector('detector/face_detector.onnx');
  } catch (error) {
    showMessage(`The face detector could not be loaded (${error.message}): place the face box by hand.`, 'info');
  }
  try {
    // The mesh runs every camera frame: in the model's runtime (one wasm runtime on the frame loop).
    state.mesh = formatOf(modelFile) === 'tflite' ?
      await loadMesh('detector/face_landmark.tflite', {threads: state.model.threads}) :
      await loadMesh('detector/face_mesh.onnx');
    if (state.detector) state.tracker = new FaceTracker({detector: state.detector, mesh: state.mesh});
    // Photos: one frame of the same chain, unsmoothed (faces.tracking.still_faces).
    if (state.detector) state.stills = new FaceTracker({detector: state.detector, mesh: state.mesh, smoothing: false,
                                                        maxFaces: STILL_MAX_FACES});
  } catch (error) {
    const empty = state.model.regionCount ? '; the model\'s region maps are empty without it' : '';
    showMessage(`The face mesh could not be loaded (${error.message}): the camera uses a box placed by hand${empty}.`,
                'info');
  }
  const model = state.model;
  const looks = model.lookCount ? `; ${model.lookCount} looks: ${lookNames().join(', ')}` : '';
  const maps = model.regionCount ? `; reads the face mesh's region maps: ${model.regionNames.join(', ')}` : '';
  $('model-name').textContent = `${modelFile} (${model.size}×${model.size} in, residual out${looks}${maps})`;
  $('model-bytes').textContent = formatBytes(model.bytes);
  $('runtime').textContent = `${model.runtime} ${model.runtimeVersion}, wasm, ${model.threads} thread(s)` +
    (model.isolated ? '' : ' — not cross-origin isolated, so one thread only') +
    `; loaded in ${model.loadMs.toFixed(0)} ms`;
  setState('ready');
  setStatus('Ready: choose or drop a photo.');
}

const ready = init();

// --- photo in -------------------------------------------------------------------------------
async function openFile(file) {
  await stopWebcam();
  setState('working');
  showMessage('');
  try {
    await ready;
    setStatus(`Reading ${file.name || 'the photo'}…`);
    const canvas = await decodePhoto(file);
    setPhoto(canvas, file.name || 'photo');
    setStatus('Finding faces…');
    await findFaces();
    setStatus('Putting the makeup on…');
    await process();
    setState('done');
    setStatus('Done.');
  } catch (error) {
    fail(error);
  }
}

function setPhoto(canvas, name) {
  const sameSize = state.photo && state.photo.width === canvas.width && state.photo.height === canvas.height;
  state.photo = canvas;
  state.pixels = pixelsOf(canvas);
  state.name = name;
  if (!sameSize || !state.box) state.box = defaultBox(canvas.width, canvas.height);
  for (const id of ['before', 'after', 'overlay']) {
    $(id).width = canvas.width;
    $(id).height = canvas.height;
  }
  $('before').getContext('2d').putImageData(state.pixels, 0, 0);
  $('viewer').classList.remove('empty');
  $('photo-info').textContent = `${name}, ${canvas.width}×${canvas.height}`;
}

const isSquare = (width, height) => Math.abs(width - height) <= 0.02 * Math.max(width, height);

/** How the found faces were aligned, for the faces line: ", by the mesh", or the count of each. */
function alignedBy() {
  const mesh = state.alignedBy.filter((by) => by === 'mesh').length, detector = state.alignedBy.length - mesh;
  if (!state.alignedBy.length) return '';
  if (!detector) return ', aligned by the mesh';
  return `, aligned by the mesh: ${mesh}, by the detector's keypoints (the mesh rejected them): ${detector}`;
}

/** Where the model runs on this photo: the user's choice, else faces found, else (a square photo
 *  whose face fills it, or no face at all) the whole photo or a box placed by hand. */
async function findFaces() {
  const {width, height} = state.photo;
  let found = [];
  if (state.choice !== 'whole' && state.choice !== 'box' && state.detector) {
    const started = performance.now();
    try {
      // Without the mesh, the detector's keypoints place each crop.
      found = state.stills ? await stillFaces(state.stills, state.photo) :
        (await detectFaces(state.detector, state.photo)).map((face) => ({region: alignFace(face),
                                                                           by: 'detector'}));
    } catch (error) {  // refused before any pass (faces.mjs searchPlan), as apply skips such a photo
      if (!(error instanceof UnsearchableImage)) throw error;
      throw new InputError(`${state.name}: ${error.message}. Pick a photo of a face, or place the face box by hand ` +
                           '("a box placed by hand" in the Faces menu).');
    }
    state.detectMs = performance.now() - started;
  }
  state.alignedBy = found.map((face) => face.by);  // 'mesh', or 'detector' where the mesh rejected a face
  const regions = found.map((face) => face.region);
  const fills = regions.length && Math.hypot(...regions[0].xAxis) >= 0.7 * width;
  let mode = state.choice;
  if (!mode) mode = isSquare(width, height) && (!regions.length || fills) ? 'whole' : (regions.length ? 'faces' : 'box');
  if (mode === 'faces' && !regions.length) mode = 'box';
  if (mode === 'box' && state.choice !== 'box' && state.detector) {
    showMessage('No face found in this photo: drag the face box onto a face and set its size.', 'info');
  }
  state.mode = mode;
  state.regions = mode === 'faces' ? regions : mode === 'whole' ? [wholePhoto(width, height)] : [boxRegion(state.box)];
  const searched = state.choice !== 'whole' && state.choice !== 'box' && state.detector;
  const what = {faces: 'made up where found', whole: 'the whole photo is the face crop', box: 'the box placed by hand'};
  $('faces-found').textContent = (searched ? `${found.length} found in ${state.detectMs.toFixed(0)} ms${alignedBy()}; ` :
                                  state.detector ? '' : 'detector not loaded; ') + what[mode];
  syncBoxControls();
}

/** The model on each of the photo's regions, with the look chosen (again, where the look changed meanwhile); a
 *  region-input model with each face's region maps: from the mesh that placed its crop, or for a crop no mesh
 *  placed (the whole photo, a box) from the mesh run on the crop itself (tracking.mjs cropShapes, as `apply
 *  --aligned`); all 0 where there is no face mesh. */
async function process() {
  const started = performance.now();
  let faces, modelMs, lookWeights;
  do {
    [faces, modelMs, lookWeights] = [[], 0, state.lookWeights];
    for (let region of state.regions) {
      const face = faceTensor(state.photo, region, state.model.size);
      if (state.model.regionCount && !region.shapes && state.stills) {
        const shapes = await cropShapes(state.stills, face, state.model.size);
        if (shapes) region = {...region, shapes};  // they serve the region strengths too, as apply's
      }
      const regionMaps = regionMapsFor(state.model, region);  // null: the model reads none
      const {madeUp, ms} = await runModel(state.model, face, lookWeights, regionMaps);
      faces.push({region, face, madeUp, regionMaps});
      modelMs += ms;
    }
  } while (lookWeights !== state.lookWeights);
  state.faces = faces;
  state.modelMs = modelMs;
  render();
  state.frameMs = performance.now() - started;
  const runs = faces.length === 1 ? 'one run' : `${faces.length} runs`;
  $('model-ms').textContent = `${modelMs.toFixed(1)} ms (${runs} at ${state.model.size}×${state.model.size})`;
  $('frame-ms').textContent = `${state.frameMs.toFixed(1)} ms (crop, model, residual onto the photo)`;
}

function render() {
  state.result = compose(state.pixels, state.faces, state.model.size, state.strength, state.regionStrengths);
  $('after').getContext('2d').putImageData(state.result, 0, 0);
  $('download').disabled = false;
  drawOverlay(state.mode === 'faces' ? state.faces.map((face) => face.region) : []);
}

/** The found faces' crops and their mask ellipses, drawn over the photo. */
function drawOverlay(regions) {
  const canvas = $('overlay');
  const context = canvas.getContext('2d');
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.clearRect(0, 0, canvas.width, canvas.height);
  const line = Math.max(1.5, canvas.width / 500);
  for (const region of regions) {
    const {origin, xAxis, yAxis} = region;
    context.setTransform(xAxis[0], xAxis[1], yAxis[0], yAxis[1], origin[0], origin[1]);  // unit square -> crop
    const unit = 1 / Math.hypot(...xAxis);
    context.lineWidth = line * unit;
    context.strokeStyle = '#ffffffb0';
    context.setLineDash([]);
    context.strokeRect(0, 0, 1, 1);
    context.setLineDash([6 * line * unit, 4 * line * unit]);
    context.beginPath();
    context.ellipse(...MASK.centre, ...MASK.radii, 0, 0, 2 * Math.PI);
    context.stroke();
  }
  context.setTransform(1, 0, 0, 1, 0, 0);
}

// Runs `process` again when the box moves or the look changes, never two at once: the last request wins.
// Resolves once every request made so far is on screen.
let pending = false;
let processing = null;
function reprocess() {
  pending = true;
  processing ??= (async () => {
    try {
      while (pending) {
        pending = false;
        await process();
      }
    } catch (error) {
      fail(error);
    } finally {
      processing = null;
    }
  })();
  return processing;
}

// --- controls -------------------------------------------------------------------------------
$('file').addEventListener('change', (event) => {
  const [file] = event.target.files;
  if (file) openFile(file);
  event.target.value = '';  // choosing the same file again still fires
});

const viewer = $('viewer');
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (event) => { event.preventDefault(); viewer.classList.add('dragging'); });
}
for (const type of ['dragleave', 'drop']) {
  document.addEventListener(type, () => viewer.classList.remove('dragging'));
}
document.addEventListener('drop', (event) => {
  event.preventDefault();
  const [file] = event.dataTransfer.files;
  if (file) openFile(file);
  else showMessage('Nothing to open: drop a photo file (JPEG, PNG or WebP).');
});

$('strength').max = String(MAX_STRENGTH);
$('strength').addEventListener('input', (event) => {
  state.strength = Number(event.target.value);
  $('strength-value').textContent = state.strength.toFixed(2);
  if (state.faces.length && !state.webcam) render();
});

/** One slider a region (regions.mjs's names and range), each a strength on the residual there: the photo is
 *  composed again at once (no model run); the camera takes it at its next frame. */
function addRegionSliders() {
  for (const name of REGION_NAMES) {
    const label = document.createElement('label');
    label.className = 'strength';
    const slider = Object.assign(document.createElement('input'), {
      id: `region-${name}`, type: 'range', min: String(MIN_REGION_STRENGTH), max: String(MAX_REGION_STRENGTH),
      step: '0.05', value: '1'});
    const shown = Object.assign(document.createElement('output'), {id: `region-${name}-value`, textContent: '1.00'});
    label.append(name, slider, shown);
    slider.addEventListener('input', () => {
      state.regionStrengths = {...state.regionStrengths, [name]: Number(slider.value)};
      shown.textContent = Number(slider.value).toFixed(2);
      if (state.faces.length && !state.webcam) render();
    });
    $('regions').append(label);
  }
}

addRegionSliders();

// --- looks (a file of several looks) ---------------------------------------------------------
const lookNames = () => state.looks.map((look) => look.name);

/** The swatch row (looks.json's colour and name per look) and the blend between the look picked and another,
 *  shown for a file of several looks only; `choice` (?look=) the look to start with (null: the first). */
function addLookControls(choice) {
  for (const look of state.looks) {
    const swatch = Object.assign(document.createElement('button'), {type: 'button', className: 'swatch'});
    swatch.dataset.look = String(look.index);
    const chip = Object.assign(document.createElement('span'), {className: 'chip'});
    chip.style.background = look.swatch_hex ?? 'transparent';
    swatch.append(chip, look.name);
    if (Number.isFinite(look.val_psnr_db)) {
      swatch.title = `${look.name}: ${look.val_psnr_db.toFixed(1)} dB on its validation faces ` +
        `(no makeup: ${look.val_baseline_db?.toFixed(1)} dB)`;
    }
    swatch.addEventListener('click', () => blendLooks({base: look.index, t: 0}));
    $('swatches').append(swatch);
    $('blend-look').append(new Option(look.name, String(look.index)));
  }
  $('blend-look').addEventListener('change', (event) => blendLooks({other: Number(event.target.value)}));
  $('blend').addEventListener('input', (event) => blendLooks({t: Number(event.target.value)}));
  $('looks').hidden = false;
  try {
    showLook(lookWeights(choice, lookNames(), modelFile));
  } catch (error) {  // a ?look= this file cannot take: its first look, and why
    showMessage(`?look=${choice}: ${error.message}. Showing ${lookNames()[0]}.`, 'info');
    showLook(lookWeights(null, lookNames(), modelFile));
  }
}

/** The swatches and the blend slider: (1 - t) of the look picked (`base`), t of the other. */
function blendLooks(change) {
  state.look = {...state.look, ...change};
  const {base, other, t} = state.look;
  return changeLook(blendWeights(state.looks.length, base, other, t));
}

/** New look weights: the controls show them, the photo is made up again with them (the camera takes them at its
 *  next frame: one more input value, no reload). Resolves once the photo shows them. */
async function changeLook(weights) {
  showLook(weights);
  // While the page works (a photo opening, the look before going on) the model run under way takes them.
  if (!state.faces.length || state.webcam || ['loading', 'working'].includes(document.body.dataset.state)) return;
  setState('working');
  setStatus(`Putting ${describe(weights, lookNames())} on…`);
  await reprocess();
  if (document.body.dataset.state === 'working') {  // not failed meanwhile
    setState('done');
    setStatus('Done.');
  }
}

/** The weights into the state and onto the controls: the look picked is the first one weighed, the blend's other
 *  look the second, or the one before (a blend of three or more shows in words only). */
function showLook(weights) {
  state.lookWeights = weights;
  const weighed = state.looks.map((look) => look.index).filter((index) => weights[index] > 0);
  const base = weighed[0];
  const other = weighed[1] ?? (state.look.other !== base ? state.look.other : (base + 1) % state.looks.length);
  state.look = {base, other, t: weighed.length === 2 ? weights[other] : 0};
  for (const swatch of $('swatches').children) {
    swatch.setAttribute('aria-pressed', String(swatch.dataset.look === String(base)));
  }
  $('blend-look').value = String(other);
  $('blend').value = String(state.look.t);
  $('blend-value').textContent = state.look.t.toFixed(2);
  $('look-chosen').textContent = describe(weights, lookNames());
}

/** A look by name or index, or a blend (NAME=W,...), as `apply --look` takes it (looks.mjs); for the tests and the
 *  benchmark. Resolves once the photo shows it; throws LookChoiceError for a choice the file cannot take. */
async function setLook(choice) {
  if (!state.model.lookCount) {  // one look: its own name (or index 0) is all it takes
    lookWeights(choice, state.looks ? lookNames() : [modelFile], modelFile);
    return;
  }
  await changeLook(lookWeights(choice, lookNames(), modelFile));
}

$('split').addEventListener('input', (event) => {
  const percent = Number(event.target.value);
  $('after').style.clipPath = `inset(0 0 0 ${percent}%)`;
  $('divider').style.left = `${percent}%`;
});

function syncBoxControls() {
  const {photo, box} = state;
  const byHand = state.mode === 'box';
  $('box').hidden = !byHand;
  $('box-size').disabled = !byHand;
  const shortSide = Math.min(photo.width, photo.height);
  const percent = Math.round((100 * box.size) / shortSide);
  $('box-size').value = String(percent);
  $('box-size-value').textContent = `${percent}%`;
  const element = $('box');
  element.style.left = `${(100 * box.x) / photo.width}%`;
  element.style.top = `${(100 * box.y) / photo.height}%`;
  element.style.width = `${(100 * box.size) / photo.width}%`;
  element.style.height = `${(100 * box.size) / photo.height}%`;
}

function moveBox(box) {
  state.box = clampBox(box, state.photo.width, state.photo.height);
  state.regions = [boxRegion(state.box)];
  syncBoxControls();
  if (!state.webcam) reprocess();
}

$('mode').addEventListener('change', async (event) => {
  state.choice = event.target.value === 'auto' ? null : event.target.value;
  if (!state.photo) return;
  showMessage('');
  if (state.webcam) {  // the next frame takes the new choice
    state.mode = cameraMode();
    syncBoxControls();
    return;
  }
  try {
    await findFaces();
    await process();
  } catch (error) {
    fail(error);
  }
});

$('box-size').addEventListener('input', (event) => {
  if (!state.photo) return;
  const {box, photo} = state;
  const size = (Number(event.target.value) / 100) * Math.min(photo.width, photo.height);
  moveBox({x: box.x + (box.size - size) / 2, y: box.y + (box.size - size) / 2, size});
});

$('box').addEventListener('pointerdown', (event) => {
  const element = event.currentTarget;
  element.setPointerCapture(event.pointerId);
  const scale = state.photo.width / $('stage').getBoundingClientRect().width;  // photo pixels per CSS pixel
  const start = {x: event.clientX, y: event.clientY, box: {...state.box}};
  const move = (moved) => moveBox({...start.box, x: start.box.x + (moved.clientX - start.x) * scale,
                                    y: start.box.y + (moved.clientY - start.y) * scale});
  element.addEventListener('pointermove', move);
  element.addEventListener('pointerup', () => element.removeEventListener('pointermove', move), {once: true});
});

/** What the "after" side shows, as PNG: a photo's result (the after canvas, alpha and all), or a
 *  camera frame's after layer (only the made-up faces) over the frame. */
async function shownAfter() {
  if (state.result) return new Promise((resolve) => $('after').toBlob(resolve, 'image/png'));
  const {width, height} = $('before');
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d');
  context.drawImage($('before'), 0, 0);
  context.drawImage($('after'), 0, 0);
  return canvas.convertToBlob({type: 'image/png'});
}

$('download').addEventListener('click', async () => {
  const stem = state.name.replace(/\.[^.]+$/, '') || 'photo';
  const blob = await shownAfter();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = `${stem}_makeup.png`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
});

// --- camera ---------------------------------------------------------------------------------
const CAMERA_SIZE = {width: 1280, height: 720};  // asked of the camera; it may give another size
const SHOW_EVERY_MS = 250;  // the figures under the picture change four times a second, not per frame

/** Stops the camera; resolves once its last frame is on the canvases. */
async function stopWebcam() {
  if (!state.webcam) return;
  const stream = state.webcam;
  state.webcam = null;
  $('webcam').textContent = 'Use the webcam';
  await state.loop?.stop();
  stream.getTracks().forEach((track) => track.stop());
  state.loop = null;
  // The last frame stays as a photo to work on (the Faces menu, the box): its pixels, read once.
  state.pixels = pixelsOf($('before'));
  setStatus('Webcam stopped.');
}

/** The camera's workers, started once (again after a failure); a failure is shown, and that job goes on in
 *  the page. Returns the model stage for the frame loop. */
function cameraWorkers() {
  const {workers} = state;
  const start = (job, url, options, onFailure = () => {}) => {
    if (workers[job] && !workers[job].failure) return workers[job];
    const worker = new PageWorker(job, url, options);
    worker.onFailure = (error) => {
      onFailure();
      showMessage(`${error.message}: the page does that job itself now, in its frame loop (slower; the next ` +
                  'camera start tries the worker again).', 'info');
    };
    return worker;
  };
  if (state.tracker) {  // a failed detector worker: the detector back in the frame that needs it
    workers.detect = start('detect', 'detector/face_detector.onnx', {}, () => { state.tracker.search = null; });
    state.tracker.search = searchFor(workers.detect);
  }
  const modelWorker = useModelWorker();
  const {regionNames} = state.model;  // the worker opens the file itself: which maps it reads, as checked here
  if (modelWorker) workers.makeUp = start('makeUp', `model/${modelFile}`, {threads, regionNames});
  return new ModelStage(state.model, modelWorker ? workers.makeUp : null);
}

/** Where the model runs on camera frames: the tracked faces, unless a box or the whole frame is chosen
 *  (or there is no tracker: a box by hand). */
function cameraMode() {
  if (state.choice === 'box' || state.choice === 'whole') return state.choice;
  return state.tracker ? 'faces' : 'box';
}

function cameraSettings() {
  const {width, height} = $('before');
  state.mode = cameraMode();
  const regions = {faces: null, whole: [wholePhoto(width, height)], box: [boxRegion(state.box)]}[state.mode];
  const {strength, regionStrengths, lookWeights} = state;
  return {regions, makeup: {strength, regionStrengths, lookWeights}};
}

let shownAt = 0;
function showCameraFrame(frame) {
  state.frames += 1;
  state.camera = {...frame, fps: state.loop.rate.perSecond};
  state.regions = frame.regions;
  drawOverlay(state.mode === 'faces' ? frame.regions : []);
  setState('done');
  state.onFrame?.(frame, $('before'));
  const now = performance.now();
  if (now - shownAt < SHOW_EVERY_MS) return;
  shownAt = now;
  const {fps, ms} = state.camera;
  $('fps').textContent = fps === null ? 'measuring…' : `${fps.toFixed(1)} frames/s (${$('before').width}×${$('before').height})`;
  $('model-ms').textContent = `${ms.model.toFixed(1)} ms (${frame.regions.length} face(s) at ${state.model.size}×${state.model.size})`;
  const where = frame.where === 'worker' ? ' in a worker' : '';
  $('frame-ms').textContent = `${ms.frame.toFixed(1)} ms from camera to screen; the page's own ${ms.main.toFixed(1)}: ` +
    `draw ${ms.draw.toFixed(1)}, faces ${ms.track.toFixed(1)}${frame.detected ? ' (detector)' : frame.around ? ' (detector around a face)' : ''}, ` +
    `show ${ms.show.toFixed(1)}; crop, ${ms.maps ? 'region maps, ' : ''}model, residual ` +
    `${(ms.crop + ms.maps + ms.model + ms.compose).toFixed(1)}${where}` +
    (state.loop.dropped ? `; ${state.loop.dropped} camera frame(s) dropped` : '');
  const search = state.tracker?.search ? `; detector in a worker, ${frame.searches} run(s)` : '';
  $('faces-found').textContent = state.mode === 'faces' ? `${frame.faces.length} followed (mesh, One Euro smoothing${search})` :
    state.mode === 'whole' ? 'the whole frame is the face crop' : 'the box placed by hand';
}

async function startWebcam() {
  await ready;
  if (!navigator.mediaDevices?.getUserMedia) throw new InputError('This browser gives this page no webcam access.');
  state.frames = 0;
  state.webcam = await navigator.mediaDevices.getUserMedia({video: CAMERA_SIZE});
  const video = $('video');
  video.srcObject = state.webcam;
  await video.play();
  const {videoWidth: width, videoHeight: height} = video;
  for (const id of ['before', 'after', 'overlay']) Object.assign($(id), {width, height});
  Object.assign(state, {photo: $('before'), pixels: null, name: 'webcam', faces: [], result: null});
  if (!state.box || state.box.size > Math.min(width, height)) state.box = defaultBox(width, height);
  state.mode = cameraMode();
  syncBoxControls();
  $('viewer').classList.remove('empty');
  $('photo-info').textContent = `webcam, ${width}×${height}`;
  $('fps').textContent = 'measuring…';
  state.loop = new CameraLoop({video, before: $('before'), after: $('after'), tracker: state.tracker ?? {reset() {}},
                               maker: cameraWorkers(), settings: cameraSettings, onFrame: showCameraFrame});
  state.loop.onError = (error) => { stopWebcam(); fail(error); };
  state.loop.start();
  $('webcam').textContent = 'Stop the webcam';
  $('download').disabled = false;
  setStatus('Webcam: live (times below are per frame).');
  showMessage('');
}

$('webcam').addEventListener('click', async () => {
  if (state.webcam) return stopWebcam();
  try {
    await startWebcam();
  } catch (error) {
    stopWebcam();
    fail(error instanceof InputError ? error : new InputError(`The webcam could not be opened: ${error.message}`));
  }
});

// --- for the tests and the benchmark ---------------------------------------------------------
function base64(typedArray) {
  const bytes = new Uint8Array(typedArray.buffer, typedArray.byteOffset, typedArray.byteLength);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

window.tinybeauty = {
  ready, state, openFile,
  modelOutputBase64: (face = 0) => base64(state.faces[face].madeUp),  // raw model output, float32 NCHW
  // the region maps a region-input model was fed for the photo's face, float32 in the file's layout (NCHW/NHWC)
  regionMapsBase64: (face = 0) => base64(state.faces[face].regionMaps),
  resultBase64: () => base64(state.result.data),     // the made-up photo, RGBA bytes
  setStrength: (value) => { $('strength').value = String(value); $('strength').dispatchEvent(new Event('input')); },
  setRegion: (name, value) => {
    $(`region-${name}`).value = String(value);
    $(`region-${name}`).dispatchEvent(new Event('input'));
  },
  timeModel: (options) => timeModel(state.model, state.faces[0].face, {...options, lookWeights: state.lookWeights,
                                                                      regions: state.faces[0].regionMaps}),
  setLook,
};
