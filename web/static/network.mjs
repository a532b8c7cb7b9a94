// One neural network in the page, in either runtime the page carries, chosen by the file's suffix:
// onnxruntime-web for .onnx, LiteRT.js (XNNPACK in WebAssembly) for .tflite. Callers hand one float32
// array per input of the file, in the file's order and of its shape (`inputs`: a face, and for a
// several-look makeup file its look weights), and get every output as a Float32Array of its own (a
// copy), in the file's order. Each runtime is set up once per realm (the page, each worker), with its thread count: a
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

/** The network in ``bytes`` (fetched from ``url``): {format, runtime, threads, inputs: [{name, shape}] (the
 *  file's, in its order), inputShape (the first input's), run(...data) -> Promise<Float32Array[]>}: one
 *  Float32Array per input, in the order of `inputs`. ``threads`` 0: the runtime's default (onnxruntime-web:
 *  its own, one thread on 2 cores; LiteRT.js: defaultLitertThreads()). */
export async function openNetwork(url, bytes, {threads = 0} = {}) {
  const format = formatOf(url);
  if (format === 'onnx') {
    ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
    if (threads) ort.env.wasm.numThreads = threads;
    const session = await ort.InferenceSession.create(bytes, {executionProviders: ['wasm'], graphOptimizationLevel: 'all'});
    const inputs = session.inputNames.map((name, i) => ({name, shape: session.inputMetadata?.[i]?.shape ?? []}));
    return {
      format, runtime: RUNTIMES.onnx, version: ort.env.versions?.web ?? 'unknown', threads: ort.env.wasm.numThreads,
      inputs, inputShape: inputs[0].shape,
      async run(...data) {
        const feeds = Object.fromEntries(inputs.map(({name, shape}, i) => [name,
                                                                          new ort.Tensor('float32', data[i], shape)]));
        const results = await session.run(feeds);
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
  const inputs = model.getInputDetails().map((detail) => ({name: detail.name, shape: Array.from(detail.shape)}));
  return {
    format, runtime: RUNTIMES.tflite, version: LITERT_VERSION, threads: used, inputs, inputShape: inputs[0].shape,
    async run(...data) {
      const tensors = inputs.map(({shape}, i) => new module.Tensor(data[i], shape));
      try {
        const outputs = await model.run(tensors);  // positional: the file's input order
        try {
          return outputs.map((output) => output.toTypedArray());  // copies out of the wasm heap
        } finally {
          for (const output of outputs) output.delete();
        }
      } finally {
        for (const tensor of tensors) tensor.delete();
      }
    },
  };
}
