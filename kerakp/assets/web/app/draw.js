// The draw stage: a frame with each face's points (coloured by their confidence where the whole path measured
// it), box, id and head-pose axes. The pose is a scaled
// orthographic fit of kerakp's 3-D mean face (the JSON's "pose" entry) to the points, enough to draw its axes.

// Camera-frame rotation (3 x 3, rows) of a head from its points: the least-squares affine map of the 3-D
// model's centred points onto the image's, its rows made orthonormal. null where too few points are valid.
export function headRotation(points, pose) {
  const pairs = pose.index.map((k, i) => [points[k], pose.model[i]]).filter(([p]) => !Number.isNaN(p[0]) && !Number.isNaN(p[1]));
  if (pairs.length < 5) return null;
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
  const unit = (v) => v.map((x) => x / Math.hypot(...v));
  const r1 = unit(rows[0]), dot = rows[1].reduce((s, v, i) => s + v * r1[i], 0);
  const r2 = unit(rows[1].map((v, i) => v - dot * r1[i]));
  const r3 = [r1[1] * r2[2] - r1[2] * r2[1], r1[2] * r2[0] - r1[0] * r2[2], r1[0] * r2[1] - r1[1] * r2[0]];
  return [r1, r2, r3];
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

export function drawFaces(context, faces, pose, {radius = 2} = {}) {
  for (const face of faces) {
    const points = face.points;
    context.fillStyle = "#00ff00";
    for (const [k, [x, y]] of points.entries()) {
      if (Number.isNaN(x) || Number.isNaN(y)) continue;
      // red unsure, green at least as sure as the median training image's point (confidence 0.5)
      if (face.confidence) context.fillStyle = `hsl(${Math.round(120 * Math.min(1, 2 * face.confidence[k]))}, 100%, 45%)`;
      context.beginPath();
      context.arc(x, y, radius, 0, 2 * Math.PI);
      context.fill();
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
    const rotation = pose ? headRotation(points, pose) : null;
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
    face.pose = euler(rotation);
  }
}
