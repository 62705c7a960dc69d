// The path of kerakp's Predictor (kerakp/inference.py) and FaceTracker (kerakp/tracking.py): every face of a
// photo read through the passes, the flip test and the turned reads; a video's faces tracked from frame to
// frame with one read each, the detector on a budget, a missed track looked for around it, and One Euro
// filters. Settings: the export's JSON.
import {calibratedBox} from "./detect.js";
import {boxIou, boxSide, cropFace, cut, invert, levelTurn, mirror, pointsBox, sureness, transformPoints, viewTurn, wholeImageBox} from "./crop.js";
import {decode, flipPoints, nanMean, pointSpread, withOffsets} from "./decode.js";

const now = () => performance.now();

// Whether the model read a face consistently (`kerakp.inference.consistent`): its flip disagreement at most
// `reject`, measured over the larger of the read's normalising distance and frontal_norm times its box side.
function consistent(points, flipNme, {norm, frontal_norm: frontalNorm}, reject) {
  const box = points ? pointsBox(points) : null;
  if (!norm || !box) return flipNme <= reject;
  return boxSide(box) > 0 && flipNme * sureness(points, norm, frontalNorm) <= reject;   // a read collapsed to a point is no face
}

export class Predictor {
  constructor(model, detector, settings) {
    this.model = model;          // a Model of the landmark .tflite (model.js)
    this.detector = detector;    // a BlazeFace (detect.js)
    this.settings = settings;    // the JSON's "model" and "predict" entries, merged
    this.ms = {detect: 0, crop: 0, model: 0};   // time spent per stage, summed (the page shows it per frame)
  }

  get rule() {
    const s = this.settings;
    return {size: s.input_size, scale: s.crop_scale, dark: s.dark};
  }

  turnFor(level) {
    const s = this.settings;
    return s.upright ? level : Math.sign(level) * Math.max(0, Math.abs(level) - s.max_roll);
  }

  // Where the next read crops around predicted points: their box, and their turn, less near profile (`Predictor.view`).
  view(points) {
    const s = this.settings;
    return [pointsBox(points), this.turnFor(s.norm ? viewTurn(points, s.norm, s.frontal_norm) : 0)];
  }

  // First-pass candidates: {box, score, detected, turn, doubtful} per detected face (or the whole image);
  // doubtful: only a turned look found it.
  async faceBoxes(image, detector = this.detector) {
    const s = this.settings;
    if (s.whole_image) return [{box: wholeImageBox(image.height, image.width, s.crop_scale), score: NaN, detected: false, turn: 0}];
    const started = now();
    await image.fill?.();   // a frame read lazily (main.js): all of it
    const faces = await detector.faces(image);
    this.ms.detect += now() - started;
    return faces.map((face) => ({
      box: calibratedBox(s.calibration, face.box, face.eyes), score: face.score, detected: true,
      turn: face.eyes ? this.turnFor(levelTurn(face.eyes, [0, 1])) : 0, doubtful: Boolean(face.turned),
    }));
  }

  // The model's points (crop pixels) on one crop.
  async read(crop) {
    const started = now();
    const [outputs] = await this.model.run(crop.data);
    this.ms.model += now() - started;
    return decode(outputs, this.settings.input_size);
  }

  async crop(image, box, angle) {
    const started = now();
    const result = await cropFace(image, box, angle, this.rule);
    this.ms.crop += now() - started;
    return result;
  }

  // Points through `passes` passes from a first-pass box (`Predictor.refine`).
  async refine(image, box, passes) {
    let view = [box, 0], points = null;
    for (let pass = 0; pass < passes; pass++) {
      const {crop, matrix} = await this.crop(image, ...view);
      points = transformPoints(invert(matrix), await this.read(crop));
      view = this.view(points);
    }
    return points;
  }

  // Where the flip test reads: around the points refined through `passes` passes (default: the settings'),
  // the candidate's own box turned by its eyes with none, the whole image for a model trained on it.
  async finalView(image, candidate, passes = this.settings.passes) {
    const s = this.settings;
    if (s.whole_image) return [wholeImageBox(image.height, image.width, s.crop_scale), 0];
    if (passes === 0) return [candidate.box, candidate.turn];
    return this.view(await this.refine(image, candidate.box, passes));
  }

  // The crop of a view and its mirror read, each with its offsets: the mean (image pixels), their
  // disagreement (NME, Infinity where they collapse) and its per-point spread (`Predictor.flip_test`).
  async flipTest(image, [box, turn], angle = 0) {
    const s = this.settings, size = s.input_size;
    const {crop, matrix} = await this.crop(image, box, turn + angle);
    const direct = withOffsets(await this.read(crop), s.offsets, 0, size);
    const mirrored = withOffsets(flipPoints(await this.read(mirror(crop)), size, s.flip), s.offsets, 1, size);
    const spread = pointSpread(direct, mirrored, s.norm, size);
    const nme = nanMean(spread);
    const mean = transformPoints(invert(matrix), direct.map(([x, y], k) => [(x + mirrored[k][0]) / 2, (y + mirrored[k][1]) / 2]));
    return {points: mean, flipNme: Number.isNaN(nme) ? Infinity : nme, spread};
  }

  // A candidate read through the passes (`passes` in place of the settings') and the flip test
  // (`Predictor.read_candidates`).
  async readCandidate(image, candidate, passes) {
    const read = await this.flipTest(image, await this.finalView(image, candidate, passes));
    return {...read, box: pointsBox(read.points), score: candidate.score, detected: candidate.detected};
  }

  // Every face of a photo, as `Landmarker.predict` reads it (`Predictor.predict_faces`): {points, box, score,
  // flipNme, spread, confidence} each, `confidence` per point in 0..1 (`kerakp.analysis.confidence`).
  async predictFaces(image) {
    const reads = [];   // a doubtful candidate's read only where consistent (`Predictor.read_candidates`)
    for (const candidate of await this.faceBoxes(image)) {
      const read = await this.readCandidate(image, candidate);
      if (!candidate.doubtful || consistent(read.points, read.flipNme, this.settings, this.settings.reject)) reads.push(read);
    }
    const kept = [];
    for (const face of reads.sort((a, b) => a.flipNme - b.flipNme)) {
      if (kept.every((other) => boxIou(face.box, other.box) <= this.settings.overlap)) kept.push(face);
    }
    const score = (f) => (Number.isNaN(f.score) ? 0 : f.score);
    kept.sort((a, b) => score(b) - score(a) || a.flipNme - b.flipNme);
    const turn = this.settings.whole_image ? 0 : this.settings.turn;
    if (turn) await this.readTurned(image, kept, turn);
    const scale = this.settings.point_spread;
    for (const face of kept) face.confidence = face.spread.map((s, k) => 2 ** (-s / Math.max(scale.length ? scale[k] : 0.02, 1e-6)));
    return kept;
  }

  // The faces' points averaged with the flip tests of their crops turned by -turn and +turn degrees, and each
  // point's spread made that of the three reads (`Predictor.read_turned`).
  async readTurned(image, kept, turn) {
    for (const face of kept) {
      const view = this.view(face.points);
      const turned = [await this.flipTest(image, view, -turn), await this.flipTest(image, view, turn)];
      const reads = [face.points, turned[0].points, turned[1].points];
      face.points = face.points.map((_, k) => [0, 1].map((c) => (reads[0][k][c] + reads[1][k][c] + reads[2][k][c]) / 3));
      const apart = reads.map((read) => pointSpread(read, face.points, this.settings.norm, this.settings.input_size));
      face.spread = face.spread.map((s, k) => (s + turned[0].spread[k] + turned[1].spread[k]) / 3 + 2 * (apart[0][k] + apart[1][k] + apart[2][k]) / 3);
    }
  }

  // One read of the crop around a tracked face's last points (`Predictor.track`); the flip test with `mirror`.
  async track(image, points, mirrorRead) {
    if (mirrorRead) return (await this.flipTest(image, this.view(points))).points;
    const {crop, matrix} = await this.crop(image, ...this.view(points));
    return transformPoints(invert(matrix), withOffsets(await this.read(crop), this.settings.offsets, 0, this.settings.input_size));
  }
}

// The One Euro filter (Casiez et al., CHI 2012) on arrays of numbers, `t` in seconds (`OneEuroFilter`).
export class OneEuroFilter {
  constructor({min_cutoff: minCutoff, beta, d_cutoff: dCutoff}) {
    Object.assign(this, {minCutoff, beta, dCutoff, value: null, speed: null, t: null});
  }

  static alpha(cutoff, dt) {
    return 1 / (1 + 1 / (2 * Math.PI * cutoff * dt));
  }

  filter(x, t) {
    if (this.value === null || t <= this.t) {
      [this.value, this.speed, this.t] = [[...x], x.map(() => 0), t];
      return [...this.value];
    }
    const dt = t - this.t, a = OneEuroFilter.alpha(this.dCutoff, dt);
    this.t = t;
    this.speed = this.speed.map((s, i) => s + a * ((x[i] - this.value[i]) / dt - s));
    this.value = this.value.map((v, i) => v + OneEuroFilter.alpha(this.minCutoff + this.beta * Math.abs(this.speed[i]), dt) * (x[i] - v));
    return [...this.value];
  }
}

// Points smoothed in the face's own frame: pose (centre, log size, roll) and shape each filtered (`FaceSmoother`).
export class FaceSmoother {
  constructor(norm, filter) {
    this.norm = norm;
    this.unit = null;
    this.pose = new OneEuroFilter(filter);
    this.shape = new OneEuroFilter(filter);
  }

  smooth(points, t) {
    const flat = (ps) => ps.flat(), unflat = (v) => points.map((_, k) => [v[2 * k], v[2 * k + 1]]);
    if (!this.norm || points[this.norm[0]].concat(points[this.norm[1]]).some(Number.isNaN)) return unflat(this.shape.filter(flat(points), t));
    const [left, right] = [points[this.norm[0]], points[this.norm[1]]];
    const side = Math.hypot(right[0] - left[0], right[1] - left[1]);
    if (side < 1e-6) return points;
    this.unit ||= side;
    let angle = Math.atan2(right[1] - left[1], right[0] - left[0]);
    const valid = points.filter(([x, y]) => !Number.isNaN(x) && !Number.isNaN(y));
    const centre = [0, 1].map((c) => valid.reduce((s, p) => s + p[c], 0) / valid.length);
    let [cos, sin] = [Math.cos(angle), Math.sin(angle)];
    const shape = points.map(([x, y]) => [((x - centre[0]) * cos + (y - centre[1]) * sin) / side, (-(x - centre[0]) * sin + (y - centre[1]) * cos) / side]);
    const [cx, cy, logSide, turned] = this.pose.filter([centre[0] / this.unit, centre[1] / this.unit, Math.log(side), angle], t);
    const smoothed = unflat(this.shape.filter(flat(shape), t));
    [angle, cos, sin] = [turned, Math.cos(turned), Math.sin(turned)];
    const scale = Math.exp(logSide);
    return smoothed.map(([u, v]) => [cx * this.unit + scale * (u * cos - v * sin), cy * this.unit + scale * (u * sin + v * cos)]);
  }
}

// Two boxes of one face (`same_place`): overlapping by IoU over `iou`, or either's centre inside the other (a
// turned face's landmark box is narrower than the box the detector gives it).
export function samePlace(a, b, iou) {
  const centreIn = (box, other) => {
    const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
    return cx >= other[0] && cy >= other[1] && cx <= other[2] && cy <= other[3];
  };
  return boxIou(a, b) > iou || centreIn(a, b) || centreIn(b, a);
}

// Faces frame after frame (`FaceTracker.step`): `step` returns the live tracks, oldest first, each with its
// raw read (before smoothing) and smoothed points.
export class FaceTracker {
  constructor(predictor, detector, near, settings) {
    this.predictor = predictor;
    this.detector = detector;    // a BlazeFace of its own, reading one tile per empty frame
    this.detector.tilesPerCall = settings.tiles_per_call;
    this.near = near;            // a BlazeFace of its own with the near look's `agree`, looking around a missed track
    this.settings = settings;    // the JSON's "track" entry
    this.tracks = [];
    this.nextId = 0;
    this.sinceDetect = 0;
    this.detectorCalls = 0;
  }

  // Lost: collapsed, out of the frame, or jumped in size from the points its crop was set around (`view`).
  lost(view, points, image) {
    const box = pointsBox(points);
    if (!box) return true;
    const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
    const inside = cx >= 0 && cx < image.width && cy >= 0 && cy < image.height;
    return boxSide(box) < this.settings.min_side || !inside || !this.sameSize(box, pointsBox(view));
  }

  // Whether a face's box is within size_jump of its size in `before` (`same_size`).
  sameSize(box, before) {
    const ratio = boxSide(box) / Math.max(boxSide(before), 1), [low, high] = this.settings.size_jump;
    return ratio > low && ratio < high;
  }

  // Whether the model read a face consistently (`FaceTracker._consistent`), at the tracker's `reject`.
  consistent(points, flipNme) {
    return consistent(points, flipNme, this.predictor.settings, this.settings.reject);
  }

  // For a track the frame's detection did not confirm: found by the detector around it, or else read
  // consistently by the flip test (`FaceTracker._still_seen`).
  async stillSeen(image, track) {
    if (await this.seenNear(image, track)) return true;
    const read = await this.predictor.flipTest(image, this.predictor.view(this.view(track)));
    return this.consistent(read.points, read.flipNme);
  }

  // Whether the near detector finds a face at the track's place in a window of near_window times its landmark
  // box around it (`FaceTracker._seen_near`).
  async seenNear(image, track) {
    const s = this.settings, box = pointsBox(track.raw);
    const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
    const half = s.near_window / 2 * Math.max(boxSide(box), s.min_side);
    const x0 = Math.max(Math.floor(cx - half), 0), y0 = Math.max(Math.floor(cy - half), 0);
    const x1 = Math.min(Math.ceil(cx + half), image.width), y1 = Math.min(Math.ceil(cy + half), image.height);
    if (x1 - x0 < s.min_window || y1 - y0 < s.min_window) return false;
    await image.fill?.([x0, y0, x1, y1]);
    const found = await this.predictor.faceBoxes(cut(image, x0, y0, x1 - x0, y1 - y0), this.near);
    return found.some((c) => samePlace([c.box[0] + x0, c.box[1] + y0, c.box[2] + x0, c.box[3] + y0], box, s.same_place_iou));
  }

  async detect(image, t) {
    this.detectorCalls += 1;
    this.sinceDetect = 0;
    const confirmed = new Set(), s = this.settings;
    for (const candidate of await this.predictor.faceBoxes(image, this.detector)) {
      const boxes = this.tracks.map((track) => pointsBox(track.raw));
      const same = boxes.flatMap((box, i) => (samePlace(candidate.box, box, s.same_place_iou) ? [i] : []));
      if (same.length) {   // the one overlapping most (the first of equals)
        const overlaps = same.map((i) => boxIou(candidate.box, boxes[i]));
        const nearest = same[overlaps.indexOf(Math.max(...overlaps))], track = this.tracks[nearest];
        confirmed.add(track.id);
        if (!this.sameSize(candidate.box, boxes[nearest])) {   // a read that shrank or swelled off its face
          const read = await this.predictor.readCandidate(image, candidate, s.new_face_passes);
          if (this.consistent(read.points, read.flipNme)) this.keep(track, read.points, true);
        }
      } else if (s.max_faces === null || this.tracks.length < s.max_faces) {
        const read = await this.predictor.readCandidate(image, candidate, s.new_face_passes);
        if (!this.consistent(read.points, read.flipNme)) continue;
        const smoother = new FaceSmoother(this.predictor.settings.norm, s);
        const track = {id: this.nextId++, raw: read.points, points: smoother.smooth(read.points, t), smoother, misses: 0,
          side: boxSide(pointsBox(read.points))};
        this.tracks.push(track);
        confirmed.add(track.id);
      }
    }
    for (const track of [...this.tracks]) {
      if (!confirmed.has(track.id) && await this.stillSeen(image, track)) confirmed.add(track.id);
      track.misses = confirmed.has(track.id) ? 0 : track.misses + 1;
      if (track.misses >= 2) this.tracks.splice(this.tracks.indexOf(track), 1);
    }
  }

  // A read becomes the track's points; its size the track's side where it is sure: frontal (sureness 1) or
  // read from a detector box (`FaceTracker._keep`).
  keep(track, points, anchored = false) {
    const norm = this.predictor.settings.norm;
    track.raw = points;
    if (anchored || !norm || sureness(points, norm, this.predictor.settings.frontal_norm) >= 1) track.side = boxSide(pointsBox(points));
  }

  // The points the next crop is set around: the last read scaled about its centre into held_side of the
  // track's side (`FaceTracker._view`: a turned face's read is a less sure measure of its size).
  view(track) {
    const box = pointsBox(track.raw), now = boxSide(box), [low, high] = this.settings.held_side;
    const held = track.side ? Math.min(Math.max(now, low * track.side), high * track.side) : now;
    if (held === now || now <= 0) return track.raw;
    const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2, k = held / now;
    return track.raw.map(([x, y]) => [cx + (x - cx) * k, cy + (y - cy) * k]);
  }

  async step(image, t) {
    for (const track of [...this.tracks]) {
      const view = this.view(track);
      const points = await this.predictor.track(image, view, this.settings.mirror);
      if (this.lost(view, points, image)) {
        this.tracks.splice(this.tracks.indexOf(track), 1);
        continue;
      }
      this.keep(track, points);
    }
    const fresh = new Set(this.tracks.map((track) => track.id));
    this.sinceDetect += 1;
    if (!this.tracks.length || this.sinceDetect >= this.settings.redetect_every) await this.detect(image, t);
    for (const track of this.tracks) if (fresh.has(track.id)) track.points = track.smoother.smooth(track.raw, t);
    return this.tracks;
  }
}
