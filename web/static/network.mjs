// One neural network in the page, in either runtime the page carries, chosen by the file's suffix:
// onnxruntime-web for .onnx, LiteRT.js (XNNPACK in WebAssembly) for .tflite. Callers hand one float32
// input of the file's shape and get every output as a Float32Array of its own (a copy), in the file's
// order. Each runtime is set up once per realm (the page, each worker), with its thread count: a
// second network in the same realm shares it.
import * as ort from './ort/ort.wasm.min.mjs';

export const RUNTIMES = {onnx: 'onnxruntime-web', tflite: 'LiteRT.js'};
const LITERT_VERSION = '2.5.3';  // web/package.json's pin (the package does not report its own)

/** 'onnx' or 'tflite', from a URL's file name. */
export function formatOf(url) {
  return /\.tflite$/i.test(new URL(url, location.href).pathname) ? 'tflite' : 'onnx';
}

let litert = null;  // {module, threads}: LiteRT.js loads its wasm once per realm

async function loadLitert(threads) {
  if (!litert) {
    const module = await import('./litert/index.js');
    // The threaded build needs SharedArrayBuffer (a cross-origin isolated page, server.py's headers).
    const threaded = threads > 1 && self.crossOriginIsolated;
    litert = {module, threads: threaded ? threads : 1,
              ready: module.loadLiteRt(new URL('./litert/wasm/', import.meta.url).href, threaded ? {threads: true} : {})};
  }
  await litert.ready;
  return litert;
}

// LiteRT.js's threads by default: every core up to four, where the page may run threads at all. On 2 cores
// the camera kept up with a 30 frames/s camera on 2 threads and fell behind on 1 (docs/measurements.md).
const LITERT_MAX_THREADS = 4;

export function defaultLitertThreads() {
  return self.crossOriginIsolated ? Math.max(1, Math.min(LITERT_MAX_THREADS, navigator.hardwareConcurrency || 1)) : 1;
}

/** The network in ``bytes`` (fetched from ``url``): {format, runtime, threads, inputShape, run(data) ->
 *  Promise<Float32Array[]>}. ``threads`` 0: the runtime's default (onnxruntime-web: its own, one thread
 *  on 2 cores; LiteRT.js: defaultLitertThreads()). */
export async function openNetwork(url, bytes, {threads = 0} = {}) {
  const format = formatOf(url);
  if (format === 'onnx') {
    ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
    if (threads) ort.env.wasm.numThreads = threads;
    const session = await ort.InferenceSession.create(bytes, {executionProviders: ['wasm'], graphOptimizationLevel: 'all'});
    const inputShape = session.inputMetadata?.[0]?.shape ?? [];
    const [input] = session.inputNames;
    return {
      format, runtime: RUNTIMES.onnx, version: ort.env.versions?.web ?? 'unknown', threads: ort.env.wasm.numThreads,
      inputShape,
      async run(data, shape = inputShape) {
        const results = await session.run({[input]: new ort.Tensor('float32', data, shape)});
        return session.outputNames.map((name) => {
          const copy = new Float32Array(results[name].data);  // the tensor's buffer belongs to the runtime
          results[name].dispose?.();
          return copy;
        });
      },
    };
  }
  const {module, threads: used} = await loadLitert(threads || defaultLitertThreads());
  const model = await module.loadAndCompile(bytes, {accelerator: 'wasm', cpuOptions: {numThreads: used}});
  const [detail] = model.getInputDetails();
  const inputShape = Array.from(detail.shape);
  return {
    format, runtime: RUNTIMES.tflite, version: LITERT_VERSION, threads: used, inputShape,
    async run(data) {
      const tensor = new module.Tensor(data, inputShape);
      try {
        const outputs = await model.run(tensor);
        try {
          return outputs.map((output) => output.toTypedArray());  // copies out of the wasm heap
        } finally {
          for (const output of outputs) output.delete();
        }
      } finally {
        tensor.delete();
      }
    },
  };
}
