// The model stage: LiteRT.js runs the exported .tflite files as they are, on the CPU (WebAssembly, SIMD).
import {loadAndCompile, loadLiteRt, Tensor} from "../vendor/core/index.js";

let runtime = null;

// LiteRT.js's WebAssembly, loaded once from the page's own folder (the relaxed-SIMD build where the browser
// has it, else the compatible one).
export function loadRuntime() {
  runtime ??= loadLiteRt(new URL("../vendor/core/", import.meta.url).href);
  return runtime;
}

export class Model {
  static async load(url) {
    await loadRuntime();
    return new Model(await loadAndCompile(new URL(url, document.baseURI).href, {accelerator: "wasm"}));
  }

  constructor(compiled) {
    this.compiled = compiled;
    this.shape = Array.from(compiled.getInputDetails()[0].shape, (d) => Math.max(d, 1));   // batch 1 where it is free
    this.outputs = compiled.getOutputDetails().map((o) => Array.from(o.shape));
  }

  // The model's outputs (Float32Arrays, in the file's order) for one input of `this.shape`.
  async run(input) {
    const tensor = new Tensor(input, this.shape);
    try {
      const outputs = await this.compiled.run(tensor);
      return outputs.map((output) => {
        const values = output.toTypedArray();   // a copy out of the runtime's memory
        output.delete();
        return values;
      });
    } finally {
      tensor.delete();
    }
  }
}
