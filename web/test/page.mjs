// Loads the page's modules (web/static/) in plain Node, for `node --test web/test/`: the page imports
// onnxruntime-web by the path the server gives it (./ort/, from web/node_modules), so that path is
// resolved here the same way; and Node lacks the browser's ImageData, which compose() returns.
import {register} from 'node:module';

register('./static-paths.mjs', import.meta.url);

globalThis.ImageData ??= class ImageData {
  constructor(data, width, height) {
    if (data.length !== 4 * width * height) throw new RangeError(`${data.length} bytes for ${width} x ${height}`);
    Object.assign(this, {data, width, height});
  }
};

/** A module of web/static/ by file name, e.g. importPage('makeup.mjs'). */
export function importPage(name) {
  return import(new URL(`../static/${name}`, import.meta.url).href);
}

/** A 2D context over an RGBA image, as far as the page's compositing reads one: canvas size, getImageData. */
export function contextOf(image) {
  return {
    canvas: {width: image.width, height: image.height},
    getImageData(x, y, width, height) {
      const data = new Uint8ClampedArray(4 * width * height);
      for (let row = 0; row < height; row++) {
        const from = 4 * ((y + row) * image.width + x);
        data.set(image.data.subarray(from, from + 4 * width), 4 * row * width);
      }
      return new ImageData(data, width, height);
    },
  };
}
