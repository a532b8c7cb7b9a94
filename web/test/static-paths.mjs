// Node resolve hook (registered by page.mjs): web/static/ort/* is onnxruntime-web's dist folder, and
// web/static/regions.json is faces/regions.json, as web/server.py serves them.
const STATIC_ORT = new URL('../static/ort/', import.meta.url).href;
const ORT_DIST = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
const SHARED = {[new URL('../static/regions.json', import.meta.url).href]: new URL('../../faces/regions.json', import.meta.url).href};

export async function resolve(specifier, context, nextResolve) {
  const url = context.parentURL ? new URL(specifier, context.parentURL).href : specifier;
  if (url.startsWith(STATIC_ORT)) return nextResolve(ORT_DIST + url.slice(STATIC_ORT.length), context);
  if (SHARED[url]) return nextResolve(SHARED[url], context);
  return nextResolve(specifier, context);
}
