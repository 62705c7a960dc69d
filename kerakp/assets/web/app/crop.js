// The crop stage: kerakp's one crop rule (kerakp/data/geometry.py) and the OpenCV resamplings it uses, on RGB
// images held as {data: Uint8ClampedArray or Float32Array, width, height, channels}: 3 values a pixel, or 4 for
// a canvas's RGBA pixels read in place (the alpha unused). What these functions make is RGB.
// Matrices are 3 x 3, row-major arrays of 9 numbers; points are [x, y] with a pixel's centre at its index.

export function rgbImage(width, height, data = new Uint8ClampedArray(width * height * 3), channels = 3) {
  return {data, width, height, channels};
}

// A window (x, y, w, h) inside an image, as an RGB image of its own.
export function cut(image, x, y, w, h) {
  const ch = image.channels, out = rgbImage(w, h), dst = out.data, src = image.data;
  if (ch === 3) {
    for (let r = 0; r < h; r++) dst.set(src.subarray(((y + r) * image.width + x) * 3, ((y + r) * image.width + x + w) * 3), r * w * 3);
    return out;
  }
  for (let r = 0, o = 0; r < h; r++) {
    for (let k = ((y + r) * image.width + x) * ch, end = k + w * ch; k < end; k += ch, o += 3) {
      dst[o] = src[k]; dst[o + 1] = src[k + 1]; dst[o + 2] = src[k + 2];
    }
  }
  return out;
}

export function multiply(a, b) {
  const out = new Array(9).fill(0);
  for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) for (let k = 0; k < 3; k++) out[r * 3 + c] += a[r * 3 + k] * b[k * 3 + c];
  return out;
}

export function invert(m) {   // an affine 3 x 3 matrix
  const det = m[0] * m[4] - m[1] * m[3];
  const a = m[4] / det, b = -m[1] / det, c = -m[3] / det, d = m[0] / det;
  return [a, b, -(a * m[2] + b * m[5]), c, d, -(c * m[2] + d * m[5]), 0, 0, 1];
}

// cv2.getRotationMatrix2D((cx, cy), angle, 1) as a 3 x 3 matrix: a turn by `angle` degrees about (cx, cy).
export function rotationMatrix(cx, cy, angle) {
  const a = angle * (Math.PI / 180), alpha = Math.cos(a), beta = Math.sin(a);
  return [alpha, beta, (1 - alpha) * cx - beta * cy, -beta, alpha, beta * cx + (1 - alpha) * cy, 0, 0, 1];
}

export function transformPoints(m, points) {
  return points.map(([x, y]) => [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]]);
}

// Tight [x0, y0, x1, y1] box of the points that are not NaN; null when none is.
export function pointsBox(points) {
  const valid = points.filter(([x, y]) => !Number.isNaN(x) && !Number.isNaN(y));
  if (!valid.length) return null;
  const xs = valid.map((p) => p[0]), ys = valid.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

// A box's longer side (`box_side`).
export function boxSide(box) {
  return Math.max(box[2] - box[0], box[3] - box[1]);
}

export function boxIou(a, b) {
  const inter = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])) * Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

// Degrees that turn the line from points[pair[0]] to points[pair[1]] level (0 when either is missing).
export function levelTurn(points, pair) {
  const [x0, y0] = points[pair[0]], [x1, y1] = points[pair[1]];
  const angle = -Math.atan2(y1 - y0, x1 - x0) * 180 / Math.PI;
  return Number.isNaN(angle) ? 0 : angle;
}

// The eye corners' distance over frontalNorm box sides, at most 1: under 1 for a face turned towards profile
// (`sureness`; NaN where a point is missing).
export function sureness(points, pair, frontalNorm) {
  const box = pointsBox(points);
  if (!box) return NaN;
  const [a, b] = [points[pair[0]], points[pair[1]]];
  return Math.min(1, Math.hypot(b[0] - a[0], b[1] - a[1]) / (frontalNorm * Math.max(boxSide(box), 1e-6)));
}

// levelTurn of read points times their sureness squared (`view_turn`: near profile the eye line's angle is a
// point's error over a short distance).
export function viewTurn(points, pair, frontalNorm) {
  const sure = sureness(points, pair, frontalNorm);
  return Number.isFinite(sure) ? levelTurn(points, pair) * sure * sure : 0;
}

// The landmark box whose crop is the whole image, centred.
export function wholeImageBox(height, width, scale) {
  const half = Math.max(height, width) / scale / 2, cx = (width - 1) / 2, cy = (height - 1) / 2;
  return [cx - half, cy - half, cx + half, cy + half];
}

// Matrix from original pixels to the size x size crop around a landmark box (`box_crop_matrix`).
export function boxCropMatrix(box, scale, size, turn = 0) {
  const [x0, y0, x1, y1] = box;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, side = Math.max(x1 - x0, y1 - y0, 1) * scale;
  const s = size / side, half = (size - 1) / 2;
  const matrix = [s, 0, half - s * cx, 0, s, half - s * cy, 0, 0, 1];
  if (!turn) return matrix;
  const a = turn * Math.PI / 180, cos = Math.cos(a), sin = Math.sin(a);
  const about = [cos, -sin, half - cos * half + sin * half, sin, cos, half - sin * half - cos * half, 0, 0, 1];
  return multiply(about, matrix);
}

let kernel = null, loading = null;

// The area shrink's WebAssembly (area.wat; its memory grows as a call needs), loaded once before any crop (the
// page's load awaits it).
export function loadKernel() {
  loading ??= fetch(new URL("./area.wasm", import.meta.url)).then((response) => response.arrayBuffer())
    .then((bytes) => WebAssembly.instantiate(bytes)).then(({instance}) => { kernel = instance.exports; });
  return loading;
}

// cv2.resize with INTER_AREA of the window [x, y, w, h] of an image (default: all of it) to (width, height),
// `scale` its source-over-target factor per axis: each target pixel the mean of the source area it covers,
// partly covered pixels weighted by their share, summed in float32 as OpenCV sums (each source row's weighted
// sums across, then those rows' weighted sum down; area.wat).
export function resizeArea(image, width, height, scaleX, scaleY, [x, y, w, h] = [0, 0, image.width, image.height]) {
  const xs = areaTaps(width, scaleX ?? w / width, w), ys = areaTaps(height, scaleY ?? h / height, h), ch = image.channels;
  const top = ys.source[0], rows = ys.source[ys.source.length - 1] - top + 1;
  let end = 0;
  const place = (bytes) => { const at = end; end += Math.ceil(bytes / 16) * 16; return at; };
  const at = {xs: [xs.first, xs.source, xs.weight].map((a) => place(a.byteLength)), ys: [ys.first, ys.source, ys.weight].map((a) => place(a.byteLength)),
    src: place(rows * w * ch + 16), across: place(rows * width * 16), sum: place(width * 16), dst: place(width * height * 3 + 4)};
  const grow = Math.ceil((end - kernel.memory.buffer.byteLength) / 65536);
  if (grow > 0) kernel.memory.grow(grow);
  const memory = kernel.memory.buffer, bytes = new Uint8Array(memory);
  for (const [taps, places] of [[xs, at.xs], [ys, at.ys]]) {
    [taps.first, taps.source, taps.weight].forEach((a, k) => new a.constructor(memory, places[k], a.length).set(a));
  }
  for (let r = 0; r < rows; r++) {
    const from = ((y + top + r) * image.width + x) * ch;
    bytes.set(image.data.subarray(from, from + w * ch), at.src + r * w * ch);
  }
  kernel.across(at.src, w * ch, ch, rows, width, ...at.xs, at.across);
  kernel.down(at.across, width, height, ...at.ys, top, at.sum, at.dst);
  return rgbImage(width, height, Uint8ClampedArray.from(bytes.subarray(at.dst, at.dst + width * height * 3)));
}

// Per target pixel of one axis (`count` of them), the source pixels it covers and their weights (OpenCV's
// computeResizeAreaTab), flat: pixel d's are at first[d] .. first[d + 1] - 1.
function areaTaps(count, scale, limit) {
  const first = [0], source = [], weight = [];
  for (let d = 0; d < count; d++) {
    const start = d * scale, end = start + scale, cell = Math.min(scale, limit - start);
    const last = Math.min(Math.floor(end), limit - 1), begin = Math.min(Math.ceil(start), last);
    if (begin - start > 1e-3) { source.push(begin - 1); weight.push((begin - start) / cell); }
    for (let s = begin; s < last; s++) { source.push(s); weight.push(1 / cell); }
    if (end - last > 1e-3) { source.push(last); weight.push(Math.min(end - last, 1, cell) / cell); }
    first.push(source.length);
  }
  return {first: Int32Array.from(first), source: Int32Array.from(source), weight: Float32Array.from(weight)};
}

// cv2.resize with INTER_LINEAR: half-pixel centres, edges clamped.
export function resizeLinear(image, width, height) {
  const out = rgbImage(width, height), fx = image.width / width, fy = image.height / height, src = image.data, ch = image.channels;
  for (let y = 0; y < height; y++) {
    let sy = (y + 0.5) * fy - 0.5; sy = Math.max(0, sy);
    const y0 = Math.min(Math.floor(sy), image.height - 1), y1 = Math.min(y0 + 1, image.height - 1), wy = Math.min(sy - y0, 1);
    for (let x = 0; x < width; x++) {
      let sx = (x + 0.5) * fx - 0.5; sx = Math.max(0, sx);
      const x0 = Math.min(Math.floor(sx), image.width - 1), x1 = Math.min(x0 + 1, image.width - 1), wx = Math.min(sx - x0, 1);
      for (let c = 0; c < 3; c++) {
        const top = src[(y0 * image.width + x0) * ch + c] * (1 - wx) + src[(y0 * image.width + x1) * ch + c] * wx;
        const bottom = src[(y1 * image.width + x0) * ch + c] * (1 - wx) + src[(y1 * image.width + x1) * ch + c] * wx;
        out.data[(y * width + x) * 3 + c] = roundEven(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return out;
}

function roundEven(v) {   // OpenCV's cvRound (half to even), as its saturate_cast rounds
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// cv2.warpAffine(image, matrix, (width, height), INTER_LINEAR, BORDER_CONSTANT 0), uint8, in OpenCV's fixed point:
// each target pixel's source position taken to 1/32 pixel, its four weights in 1/1024ths, the sum rounded half up.
export function warpLinear(image, m, width, height = width) {
  const inv = invert(m), out = rgbImage(width, height), src = image.data, ch = image.channels, w = image.width, h = image.height, dst = out.data;
  const at = (x, y, c) => (x >= 0 && y >= 0 && x < w && y < h ? src[(y * w + x) * ch + c] : 0);
  const dx = new Int32Array(width), dy = new Int32Array(width);   // each column's step from the row's start
  for (let x = 0; x < width; x++) { dx[x] = roundEven(inv[0] * x * 1024); dy[x] = roundEven(inv[3] * x * 1024); }
  for (let y = 0, o = 0; y < height; y++) {
    const x0 = roundEven((inv[1] * y + inv[2]) * 1024) + 16, y0 = roundEven((inv[4] * y + inv[5]) * 1024) + 16;
    for (let x = 0; x < width; x++, o += 3) {
      const X = (x0 + dx[x]) >> 5, Y = (y0 + dy[x]) >> 5;
      const ix = X >> 5, iy = Y >> 5, ax = X & 31, ay = Y & 31;
      const w00 = (32 - ax) * (32 - ay), w01 = ax * (32 - ay), w10 = (32 - ax) * ay, w11 = ax * ay;
      if (ix >= 0 && iy >= 0 && ix + 1 < w && iy + 1 < h) {
        const k = (iy * w + ix) * ch, below = k + w * ch;
        for (let c = 0; c < 3; c++) {
          dst[o + c] = (src[k + c] * w00 + src[k + ch + c] * w01 + src[below + c] * w10 + src[below + ch + c] * w11 + 512) >> 10;
        }
      } else {
        for (let c = 0; c < 3; c++) {
          dst[o + c] = (at(ix, iy, c) * w00 + at(ix + 1, iy, c) * w01 + at(ix, iy + 1, c) * w10 + at(ix + 1, iy + 1, c) * w11 + 512) >> 10;
        }
      }
    }
  }
  return out;
}

// `warp`: a crop shrinking the image by more than half first shrinks the part of the image it shows (with a
// margin of two shrunk pixels) by area to 1.5 times its scale, then warps the rest at about 1:1, so every
// source pixel counts.
export function warp(image, m, size) {
  const scale = Math.sqrt(Math.abs(m[0] * m[4] - m[1] * m[3]));
  if (scale >= 0.5) return warpLinear(image, m, size);
  const factor = scale * 1.5, [x0, y0, x1, y1] = warpSource(image, m, size);
  if (Math.min(x1 - x0, y1 - y0) * factor <= 0.5) return rgbImage(size, size);   // (almost) nothing of the image in the crop
  // cv2.resize(part, None, fx=factor, fy=factor): its size rounded as OpenCV's cvRound does, its scale 1 / factor
  const [w, h] = [x1 - x0, y1 - y0];
  const small = resizeArea(image, roundEven(w * factor), roundEven(h * factor), 1 / factor, 1 / factor, [x0, y0, w, h]);
  const pre = [factor, 0, factor * (0.5 - x0) - 0.5, 0, factor, factor * (0.5 - y0) - 0.5, 0, 0, 1];
  return warp(small, multiply(m, invert(pre)), size);
}

// The part [x0, y0, x1, y1] of an image that `warp` reads for a crop: the crop's corners mapped back, with the
// area shrink's margin (two shrunk pixels) or the bilinear taps' (two pixels) around, within the image. A frame
// read lazily (main.js) reads only this part before the crop.
export function warpSource(image, m, size) {
  const scale = Math.sqrt(Math.abs(m[0] * m[4] - m[1] * m[3])), margin = scale >= 0.5 ? 2 : Math.ceil(2 / (scale * 1.5));
  const corners = transformPoints(invert(m), [[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]]);
  const xs = corners.map((p) => p[0]), ys = corners.map((p) => p[1]);
  return [Math.max(Math.floor(Math.min(...xs)) - margin, 0), Math.max(Math.floor(Math.min(...ys)) - margin, 0),
    Math.min(Math.ceil(Math.max(...xs)) + margin + 1, image.width), Math.min(Math.ceil(Math.max(...ys)) + margin + 1, image.height)];
}

// `expose`: a crop darker than `dark` on average smoothed a little (Gaussian, sigma 1) and brightened to a
// mean of twice `dark` (at most 4 times); any other crop as it is. Returns float values 0..255.
export function expose(crop, dark) {
  const {data, width, height} = crop;
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i];
  const mean = sum / data.length, values = Float32Array.from(data);
  if (mean >= dark) return rgbImage(width, height, values);
  const gain = Math.min(4, 2 * dark / Math.max(mean, 1));
  const kernel = gaussianKernel(9, 1.0), half = 4, temp = new Float32Array(values.length), out = new Float32Array(values.length);
  const reflect = (i, n) => (i < 0 ? -i : i >= n ? 2 * n - 2 - i : i);   // BORDER_REFLECT_101
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) {
    let v = 0;
    for (let k = -half; k <= half; k++) v += kernel[k + half] * values[(y * width + reflect(x + k, width)) * 3 + c];
    temp[(y * width + x) * 3 + c] = v;
  }
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) {
    let v = 0;
    for (let k = -half; k <= half; k++) v += kernel[k + half] * temp[(reflect(y + k, height) * width + x) * 3 + c];
    out[(y * width + x) * 3 + c] = Math.min(255, Math.max(0, v * gain));
  }
  return rgbImage(width, height, out);
}

function gaussianKernel(size, sigma) {
  const half = (size - 1) / 2, kernel = Array.from({length: size}, (_, i) => Math.exp(-((i - half) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b, 0);
  return kernel.map((v) => v / total);
}

// An image mirrored left to right, RGB (the flip test's second read, the detector's second look).
export function mirror(image) {
  const {data, width, height, channels: ch} = image, out = new data.constructor(width * height * 3);
  for (let y = 0, o = 0; y < height; y++) for (let x = 0; x < width; x++, o += 3) {
    const k = (y * width + width - 1 - x) * ch;
    out[o] = data[k]; out[o + 1] = data[k + 1]; out[o + 2] = data[k + 2];
  }
  return rgbImage(width, height, out);
}

// The model-input crop around a landmark box, turned by `angle` degrees (exposed if dark), and its matrix; a
// frame read lazily (`fill`, main.js) reads the part the crop needs first.
export async function cropFace(image, box, angle, rule) {
  const matrix = boxCropMatrix(box, rule.scale, rule.size, angle);
  await image.fill?.(warpSource(image, matrix, rule.size));
  return {crop: expose(warp(image, matrix, rule.size), rule.dark), matrix};
}
