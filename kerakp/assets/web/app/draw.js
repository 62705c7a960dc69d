// The draw stage: a frame with each face's points (coloured by their confidence where the whole path measured
// it; hollow where hidden behind the head, for iBUG 68), box, id and head-pose axes. The pose is
// `kerakp.analysis.head_pose`'s perspective fit of kerakp's 3-D mean face (the JSON's "pose" entry) to the
// points, and each point's visibility `kerakp.analysis.visibility`'s logistic of its turned surface normal (the
// JSON's "visibility" entry).

// Camera-frame rotation (3 x 3, rows) of a head from its points in an image of width x height (`head_pose`):
// the rotation and translation of the 3-D model whose projection through a camera of focal length the image's
// longer side, centred, lies nearest the points (least squares, Levenberg-Marquardt from the scaled-
// orthographic fit). null where too few points are valid.
export function headPose(points, pose, width, height) {
  const pairs = pose.index.map((k, i) => [points[k], pose.model[i]]).filter(([p]) => !Number.isNaN(p[0]) && !Number.isNaN(p[1]));
  if (pairs.length < 5) return null;
  const start = orthographic(pairs);
  if (!start) return null;
  const focal = Math.max(width, height), centre = [width / 2, height / 2];
  let {rotation, t} = start;
  // the model's centroid at the depth where its scale is the fit's, projected onto the image's
  t = [0, 1].map((c) => (start.image[c] - centre[c]) / start.scale - dot(rotation[c], start.model))
    .concat([focal / start.scale - dot(rotation[2], start.model)]);
  // the residuals' (2N) sum of squares at (r, tt); with `normal` ({jtj: 36 zeros, jtr: 6}), J'J and J'r added
  // into it, J their Jacobian (2N x 6: a small turn w of the rotation, R <- exp([w]x) R, then t)
  const fit = (r, tt, normal) => {
    let cost = 0;
    for (const [p, q] of pairs) {
      const v0 = r[0][0] * q[0] + r[0][1] * q[1] + r[0][2] * q[2], v1 = r[1][0] * q[0] + r[1][1] * q[1] + r[1][2] * q[2];
      const v2 = r[2][0] * q[0] + r[2][1] * q[1] + r[2][2] * q[2];
      const x0 = v0 + tt[0], x1 = v1 + tt[1], z = v2 + tt[2];
      const rx = focal * x0 / z + centre[0] - p[0], ry = focal * x1 / z + centre[1] - p[1];
      cost += rx * rx;
      cost += ry * ry;
      if (!normal) continue;
      // each residual's row: d(projection)/dx = d, then the turn's columns d . (e_j x v)
      const f = focal / z, gx = -focal * x0 / (z * z), gy = -focal * x1 / (z * z);
      addRow(normal, [gx * v1, f * v2 - gx * v0, -f * v1, f, 0, gx], rx);
      addRow(normal, [gy * v1 - f * v2, -gy * v0, f * v0, 0, f, gy], ry);
    }
    return cost;
  };
  let lambda = 1e-3;
  for (let iteration = 0; iteration < 100; iteration++) {
    const normal = {jtj: new Float64Array(36), jtr: new Float64Array(6)}, before = fit(rotation, t, normal);
    const jtj = [0, 1, 2, 3, 4, 5].map((a) => Array.from(normal.jtj.subarray(a * 6, a * 6 + 6)));
    let improved = false;
    for (let tries = 0; tries < 10 && !improved; tries++) {
      const step = solve(jtj.map((row, a) => row.map((v, b) => (a === b ? v * (1 + lambda) : v))), Array.from(normal.jtr, (v) => -v));
      if (!step) break;
      const turned = multiply3(rodrigues(step.slice(0, 3)), rotation), moved = t.map((v, c) => v + step[3 + c]);
      const after = fit(turned, moved);
      if (after < before) {
        [rotation, t, improved] = [turned, moved, true];
        lambda = Math.max(lambda / 10, 1e-12);
        if (before - after <= 1e-14 * before) return rotation;
      } else {
        lambda *= 10;
      }
    }
    if (!improved) break;
  }
  return rotation;
}

// J'J and J'r of Gauss-Newton (`normal`: {jtj: 36, jtr: 6}) with one more row of J and its residual.
function addRow(normal, row, residual) {
  for (let a = 0; a < 6; a++) {
    normal.jtr[a] += row[a] * residual;
    for (let b = 0; b < 6; b++) normal.jtj[a * 6 + b] += row[a] * row[b];
  }
}

// The scaled-orthographic fit: the least-squares affine map of the 3-D model's centred points onto the image's,
// its rows made orthonormal; with its scale and both centroids. null where degenerate.
function orthographic(pairs) {
  const mean = (list, n) => Array.from({length: n}, (_, c) => list.reduce((s, v) => s + v[c], 0) / list.length);
  const m2 = mean(pairs.map((p) => p[0]), 2), m3 = mean(pairs.map((p) => p[1]), 3);
  const X = pairs.map(([, q]) => q.map((v, c) => v - m3[c])), Y = pairs.map(([p]) => p.map((v, c) => v - m2[c]));
  const xtx = [0, 1, 2].map((a) => [0, 1, 2].map((b) => X.reduce((s, q) => s + q[a] * q[b], 0)));
  const inv = invert3(xtx);
  if (!inv) return null;
  const rows = [0, 1].map((r) => {
    const xty = [0, 1, 2].map((a) => X.reduce((s, q, i) => s + q[a] * Y[i][r], 0));
    return [0, 1, 2].map((a) => inv[a].reduce((s, v, b) => s + v * xty[b], 0));
  });
  const scale = (Math.hypot(...rows[0]) + Math.hypot(...rows[1])) / 2;
  const unit = (v) => v.map((x) => x / Math.hypot(...v));
  const r1 = unit(rows[0]), along = dot(rows[1], r1);
  const r2 = unit(rows[1].map((v, i) => v - along * r1[i]));
  return {rotation: [r1, r2, cross(r1, r2)], scale, image: m2, model: m3};
}

const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const multiply3 = (a, b) => a.map((row) => [0, 1, 2].map((c) => row.reduce((s, v, k) => s + v * b[k][c], 0)));

// The rotation of a turn vector (axis times angle in radians).
function rodrigues(w) {
  const angle = Math.hypot(...w);
  if (angle < 1e-15) return [[1, -w[2], w[1]], [w[2], 1, -w[0]], [-w[1], w[0], 1]];
  const [x, y, z] = w.map((v) => v / angle), c = Math.cos(angle), s = Math.sin(angle), k = 1 - c;
  return [[c + x * x * k, x * y * k - z * s, x * z * k + y * s], [y * x * k + z * s, c + y * y * k, y * z * k - x * s],
    [z * x * k - y * s, z * y * k + x * s, c + z * z * k]];
}

// x with a x = b (Gaussian elimination with partial pivoting); null where a is singular.
function solve(a, b) {
  const n = b.length, m = a.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let pivot = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[pivot][c])) pivot = r;
    if (Math.abs(m[pivot][c]) < 1e-300) return null;
    [m[c], m[pivot]] = [m[pivot], m[c]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r][c] / m[c][c];
      for (let k = c; k <= n; k++) m[r][k] -= f * m[c][k];
    }
  }
  return m.map((row, i) => row[n] / row[i]);
}

// Per point, the probability that it is seen at a head's rotation (`kerakp.analysis.visibility`): a logistic of
// how far its surface normal on the mean face turns towards the camera, `table` rows [nx, ny, nz, slope, bias].
export function visibility(rotation, table) {
  return table.map(([nx, ny, nz, slope, bias]) => 1 / (1 + Math.exp(-(slope * -dot(rotation[2], [nx, ny, nz]) + bias))));
}

function invert3(m) {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  if (Math.abs(det) < 1e-12) return null;
  return [[e * i - f * h, c * h - b * i, b * f - c * e], [f * g - d * i, a * i - c * g, c * d - a * f],
    [d * h - e * g, b * g - a * h, a * e - b * d]].map((row) => row.map((v) => v / det));
}

// (yaw, pitch, roll) in degrees of a rotation, signed as kerakp.analysis.euler signs them.
export function euler(r) {
  const deg = 180 / Math.PI;
  return [-Math.atan2(-r[2][0], r[2][2]) * deg, -Math.asin(Math.max(-1, Math.min(1, r[2][1]))) * deg, Math.atan2(-r[0][1], r[1][1]) * deg];
}

// Each face drawn; its head pose (`face.pose`: yaw, pitch, roll) and, with `seen` (the JSON's "visibility"
// entry), each point's visibility (`face.visible`) set on it. Hidden points (visibility under `seen.seen`) are
// hollow marks, as kerakp/drawing.py draws them.
export function drawFaces(context, faces, pose, seen, {radius = 2} = {}) {
  const {width, height} = context.canvas;
  for (const face of faces) {
    const points = face.points;
    const rotation = pose ? headPose(points, pose, width, height) : null;
    face.pose = rotation ? euler(rotation) : null;
    if (seen) face.visible = rotation ? visibility(rotation, seen.table) : points.map(() => NaN);
    const marks = new Map();   // one path per colour, filled (seen) or hollow (hidden): a few canvas calls a face
    for (const [k, [x, y]] of points.entries()) {
      if (Number.isNaN(x) || Number.isNaN(y)) continue;
      // red unsure, green at least as sure as the median training image's point (confidence 0.5)
      const colour = face.confidence ? `hsl(${Math.round(120 * Math.min(1, 2 * face.confidence[k]))}, 100%, 45%)` : "#00ff00";
      const hidden = Boolean(seen && face.visible[k] < seen.seen), key = `${colour} ${hidden}`, r = radius + (hidden ? 1 : 0);
      if (!marks.has(key)) marks.set(key, {colour, hidden, path: new Path2D()});
      const {path} = marks.get(key);
      path.moveTo(x + r, y);
      path.arc(x, y, r, 0, 2 * Math.PI);
    }
    context.lineWidth = 1;
    for (const {colour, hidden, path} of marks.values()) {
      context.fillStyle = context.strokeStyle = colour;
      if (hidden) context.stroke(path); else context.fill(path);
    }
    const valid = points.filter(([x, y]) => !Number.isNaN(x) && !Number.isNaN(y));
    if (!valid.length) continue;
    const xs = valid.map((p) => p[0]), ys = valid.map((p) => p[1]);
    const [x0, y0, x1, y1] = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
    context.strokeStyle = "#00c8ff";
    context.lineWidth = 1;
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    if (face.id !== undefined) {
      context.fillStyle = "#ff00ff";
      context.font = "14px sans-serif";
      context.fillText(`#${face.id}`, x0, Math.max(12, y0 - 6));
    }
    if (!rotation) continue;
    const origin = pose.nose !== null ? points[pose.nose] : [(x0 + x1) / 2, (y0 + y1) / 2];
    const length = 0.5 * Math.max(x1 - x0, y1 - y0);
    ["#ff0000", "#00ff00", "#0000ff"].forEach((colour, k) => {   // x, y, and z towards the camera
      const sign = k === 2 ? -1 : 1;
      context.strokeStyle = colour;
      context.lineWidth = 2;
      context.beginPath();
      context.moveTo(origin[0], origin[1]);
      context.lineTo(origin[0] + length * sign * rotation[0][k], origin[1] + length * sign * rotation[1][k]);
      context.stroke();
    });
  }
}
