// The page: wires makeup.mjs to the controls. URL parameters: ?model=FILE (an .onnx file of the
// exported set, default tinybeauty.onnx) and ?threads=N (wasm threads, default onnxruntime-web's).
// `window.tinybeauty` exposes the state and a few calls for the tests and the benchmark, which
// feed photos through the same file input a person uses.
import {
  InputError, MAX_STRENGTH, clampBox, compose, decodePhoto, defaultBox, drawnCanvas, faceTensor, loadModel,
  pixelsOf, runModel, timeModel,
} from './makeup.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const modelFile = params.get('model') || 'tinybeauty.onnx';
const threads = Number(params.get('threads')) || 0;

const state = {model: null, photo: null, pixels: null, name: '', box: null, face: null, madeUp: null,
               result: null, strength: 1, modelMs: null, frameMs: null, webcam: null};

function setState(name) {
  document.body.dataset.state = name;
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
}

function formatBytes(bytes) {
  return `${bytes.toLocaleString()} bytes (${(bytes / 1000).toFixed(1)} KB)`;
}

async function init() {
  try {
    state.model = await loadModel(`model/${modelFile}`, {threads});
  } catch (error) {
    $('model-name').textContent = modelFile;
    showMessage(`The model could not be loaded: ${error.message}`);
    setState('error');
    throw error;
  }
  const model = state.model;
  $('model-name').textContent = `${modelFile} (${model.size}×${model.size} in, residual out)`;
  $('model-bytes').textContent = formatBytes(model.bytes);
  $('runtime').textContent = `onnxruntime-web ${model.ortVersion}, wasm, ${model.threads} thread(s)` +
    (model.isolated ? '' : ' — not cross-origin isolated, so one thread only') +
    `; loaded in ${model.loadMs.toFixed(0)} ms`;
  setState('ready');
}

const ready = init();

// --- photo in -------------------------------------------------------------------------------
async function openFile(file) {
  stopWebcam();
  setState('working');
  showMessage('');
  try {
    await ready;
    const canvas = await decodePhoto(file);
    setPhoto(canvas, file.name || 'photo');
    await process();
    setState('done');
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
  for (const id of ['before', 'after']) {
    $(id).width = canvas.width;
    $(id).height = canvas.height;
  }
  $('before').getContext('2d').putImageData(state.pixels, 0, 0);
  $('viewer').classList.remove('empty');
  $('photo-info').textContent = `${name}, ${canvas.width}×${canvas.height}`;
  syncBoxControls();
}

async function process() {
  const started = performance.now();
  state.face = faceTensor(state.photo, state.box, state.model.size);
  const {madeUp, ms} = await runModel(state.model, state.face);
  state.madeUp = madeUp;
  state.modelMs = ms;
  render();
  state.frameMs = performance.now() - started;
  $('model-ms').textContent = `${ms.toFixed(1)} ms (onnxruntime-web, one 256×256 run)`;
  $('frame-ms').textContent = `${state.frameMs.toFixed(1)} ms (crop, model, residual onto the photo)`;
}

function render() {
  state.result = compose(state.pixels, state.box, state.face, state.madeUp, state.model.size, state.strength);
  $('after').getContext('2d').putImageData(state.result, 0, 0);
  $('download').disabled = false;
}

// Runs `process` again when the box moves, never two at once: the last request wins.
let pending = null;
let running = false;
async function reprocess() {
  pending = true;
  if (running) return;
  running = true;
  try {
    while (pending) {
      pending = false;
      await process();
    }
  } catch (error) {
    fail(error);
  } finally {
    running = false;
  }
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
  if (state.madeUp && !state.webcam) render();
});

$('split').addEventListener('input', (event) => {
  const percent = Number(event.target.value);
  $('after').style.clipPath = `inset(0 0 0 ${percent}%)`;
  $('divider').style.left = `${percent}%`;
});

function syncBoxControls() {
  const {photo, box} = state;
  const shortSide = Math.min(photo.width, photo.height);
  const percent = Math.round((100 * box.size) / shortSide);
  $('box-size').value = String(percent);
  $('box-size-value').textContent = `${percent}%`;
  const element = $('box');
  element.style.left = `${(100 * box.x) / photo.width}%`;
  element.style.top = `${(100 * box.y) / photo.height}%`;
  element.style.width = `${(100 * box.size) / photo.width}%`;
  element.style.height = `${(100 * box.size) / photo.height}%`;
  element.classList.toggle('whole', box.size >= photo.width && box.size >= photo.height);
}

function moveBox(box) {
  state.box = clampBox(box, state.photo.width, state.photo.height);
  syncBoxControls();
  if (!state.webcam) reprocess();
}

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

$('download').addEventListener('click', () => {
  const stem = state.name.replace(/\.[^.]+$/, '') || 'photo';
  $('after').toBlob((blob) => {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = `${stem}_makeup.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }, 'image/png');
});

// --- webcam ---------------------------------------------------------------------------------
function stopWebcam() {
  if (!state.webcam) return;
  state.webcam.getTracks().forEach((track) => track.stop());
  state.webcam = null;
  $('webcam').textContent = 'Use the webcam';
}

async function webcamLoop() {
  const video = $('video');
  while (state.webcam) {
    if (video.readyState >= 2) {
      setPhoto(drawnCanvas(video, video.videoWidth, video.videoHeight), 'webcam');
      await process();
      setState('done');
    }
    await new Promise(requestAnimationFrame);
  }
}

$('webcam').addEventListener('click', async () => {
  if (state.webcam) return stopWebcam();
  try {
    await ready;
    if (!navigator.mediaDevices?.getUserMedia) throw new InputError('This browser gives this page no webcam access.');
    state.webcam = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}});
    const video = $('video');
    video.srcObject = state.webcam;
    await video.play();
    $('webcam').textContent = 'Stop the webcam';
    showMessage('');
    webcamLoop().catch(fail);
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
  modelOutputBase64: () => base64(state.madeUp),     // the last run's raw model output, float32 NCHW
  resultBase64: () => base64(state.result.data),     // the made-up photo, RGBA bytes
  setStrength: (value) => { $('strength').value = String(value); $('strength').dispatchEvent(new Event('input')); },
  timeModel: (options) => timeModel(state.model, state.face, options),
};
