// The decode stage: model outputs (2K values, crop fractions) to points in crop pixels, the mirrored read put
// back under its own names, the model's fitted point offsets, and how far two reads of a face disagree.

// (2K) outputs -> K [x, y] points in crop pixels (`decode_regression`).
export function decode(outputs, size) {
  const points = [];
  for (let k = 0; k < outputs.length; k += 2) points.push([outputs[k] * size - 0.5, outputs[k + 1] * size - 0.5]);
  return points;
}

// Points read on a mirrored crop of `width` pixels, mirrored back and re-indexed by the markup's flip.
export function flipPoints(points, width, flip) {
  return flip.map((k) => [width - 1 - points[k][0], points[k][1]]);
}

// The fitted offsets (crop fractions) of one reading (0 direct, 1 mirrored) added, in crop pixels.
export function withOffsets(points, offsets, reading, size) {
  return points.map(([x, y], k) => [x + offsets[reading][k][0] * size, y + offsets[reading][k][1] * size]);
}

// Per point, the distance between two reads over the markup's normalising distance in the second (`point_spread`).
export function pointSpread(direct, mirrored, norm, size) {
  const scale = norm ? Math.hypot(mirrored[norm[0]][0] - mirrored[norm[1]][0], mirrored[norm[0]][1] - mirrored[norm[1]][1]) : size;
  return direct.map(([x, y], k) => Math.hypot(x - mirrored[k][0], y - mirrored[k][1]) / scale);
}

export function nanMean(values) {
  const kept = values.filter((v) => !Number.isNaN(v));
  return kept.length ? kept.reduce((a, b) => a + b, 0) / kept.length : NaN;
}
