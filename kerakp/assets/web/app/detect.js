// The detect stage: MediaPipe's short-range BlazeFace decoded as kerakp/detect.py does (letterbox, SSD anchors,
// weighted non-maximum suppression, the 3 x 3 tiles where no face is sure, and where still nothing, the second
// look at the weak faces of the image, of its mirror image and of the full-range model, then the image turned by
// each of turned_looks degrees in turn), and the model's box
// calibration from a detector box (and the eyes it saw) to the landmark box. Every number comes from the
// export's JSON.
import {boxIou, cut, invert, mirror, resizeArea, resizeLinear, rotationMatrix, transformPoints, warpLinear} from "./crop.js";

export class BlazeFace {
  // `full`: the full-range BlazeFace the second look reads (a BlazeFace of its own), null for none.
  constructor(model, settings, full = null) {
    this.model = model;
    this.settings = settings;   // {size, anchors, min_score, iou, tiles, sure, second_look, agree, floor, ...}
    this.full = full;
    this.tilesPerCall = null;
    this.nextTile = 0;
    // the regressors (16 values per anchor) and the scores (1 per anchor), told apart by their last axis
    const last = model.outputs.map((shape) => shape[shape.length - 1]);
    this.regressors = last.indexOf(Math.max(...last));
    this.classifiers = 1 - this.regressors;
  }

  // Boxes, scores and keypoints (image pixels) of the anchors scoring `minScore` (default min_score) or more
  // in one window.
  async candidates(image, [x, y, w, h], minScore = this.settings.min_score) {
    const {size, anchors} = this.settings;
    const window = x === 0 && y === 0 && w === image.width && h === image.height ? image : cut(image, x, y, w, h);
    const scale = size / Math.max(h, w);
    const newW = Math.max(1, Math.round(w * scale)), newH = Math.max(1, Math.round(h * scale));
    const left = Math.floor((size - newW) / 2), top = Math.floor((size - newH) / 2);
    const small = scale < 1 ? resizeArea(window, newW, newH) : resizeLinear(window, newW, newH);
    const square = new Float32Array(size * size * 3).fill(-1);   // black bars, as MediaPipe pads
    for (let r = 0; r < newH; r++) for (let k = 0; k < newW * 3; k++) {
      square[((top + r) * size + left) * 3 + k] = small.data[r * newW * 3 + k] / 127.5 - 1;
    }
    const sx = w / newW, sy = h / newH;
    const back = ([u, v]) => [u * size * sx - left * sx - 0.5 + x, v * size * sy - top * sy - 0.5 + y];
    const outputs = await this.model.run(square);
    const raw = outputs[this.regressors], logits = outputs[this.classifiers];
    const found = [];
    for (let a = 0; a < anchors.length; a++) {
      const score = 1 / (1 + Math.exp(-Math.max(-80, Math.min(80, logits[a]))));
      if (score < minScore) continue;
      const d = raw.subarray(a * 16, a * 16 + 16).map((v) => v / size);
      const [ax, ay] = anchors[a];
      const cx = d[0] + ax, cy = d[1] + ay, hw = d[2] / 2, hh = d[3] / 2;
      const [x0, y0] = back([cx - hw, cy - hh]), [x1, y1] = back([cx + hw, cy + hh]);
      const keypoints = [];
      for (let k = 0; k < 6; k++) keypoints.push(back([d[4 + 2 * k] + ax, d[5 + 2 * k] + ay]));
      found.push({box: [x0, y0, x1, y1], score, keypoints});
    }
    // a face cut by a tile's inner edge lies whole in a neighbouring tile: drop the fragment
    const low = [x > 0 ? x : -Infinity, y > 0 ? y : -Infinity];
    const high = [x + w < image.width ? x + w : Infinity, y + h < image.height ? y + h : Infinity];
    return found.filter(({box}) => box[0] >= low[0] - 2 && box[1] >= low[1] - 2 && box[2] <= high[0] + 2 && box[3] <= high[1] + 2);
  }

  tiles(height, width) {
    const tw = Math.max(1, Math.floor(width / 2)), th = Math.max(1, Math.floor(height / 2)), all = [];
    for (const y of [0, Math.floor(height / 4), height - th]) for (const x of [0, Math.floor(width / 4), width - tw]) all.push([x, y, tw, th]);
    if (!this.tilesPerCall) return all;
    const chosen = Array.from({length: this.tilesPerCall}, (_, k) => (this.nextTile + k) % all.length);
    this.nextTile = (chosen[chosen.length - 1] + 1) % all.length;
    return chosen.map((k) => all[k]);
  }

  // Every face scoring min_score or more, surest first: [{box, score, eyes}] (eyes: image-left first). Where
  // no face of the whole image is sure, the tiles too; where nothing is found, the second look, then the
  // turned looks.
  async faces(image) {
    const faces = await this.look(image, this.settings.tiles);
    return faces.length ? faces : this.turned(image);
  }

  // The faces of the whole image (and of the tiles, with `tiles`), else of the second look (`_look`).
  async look(image, tiles) {
    const s = this.settings, second = s.second_look && this.full !== null;
    const whole = await this.candidates(image, [0, 0, image.width, image.height], second ? Math.min(s.floor, s.min_score) : s.min_score);
    let found = whole.filter((f) => f.score >= s.min_score);
    if (tiles && !found.some((f) => f.score >= s.sure)) {
      for (const window of this.tiles(image.height, image.width)) found = found.concat(await this.candidates(image, window));
    }
    const faces = merged(found, s.iou);
    return faces.length || !second ? faces : this.second(image, merged(whole, s.iou));
  }

  // The second look (`BlazeFaceDetector._second`): the weak faces (from `floor`) of the whole image (`whole`),
  // of its mirror image and of the full-range model; a face of either short-range look is kept where its mean
  // score over the three looks (0 for a look that saw nothing there) reaches `agree`, with that score, its box
  // and eyes the short-range model's, merged.
  async second(image, whole) {
    const {floor, iou, agree} = this.settings, {width, height} = image;
    const flipped = await this.candidates(mirror(image), [0, 0, width, height], floor);
    const mirrored = merged(flipped.map(({box, score, keypoints}) => ({
      box: [width - 1 - box[2], box[1], width - 1 - box[0], box[3]], score, keypoints: keypoints.map(([x, y]) => [width - 1 - x, y]),
    })), iou);
    const looks = [whole, mirrored, merged(await this.full.candidates(image, [0, 0, width, height]), this.full.settings.iou)];
    const kept = [];
    for (const face of whole.concat(mirrored)) {
      const score = looks.reduce((sum, look) => sum + look.reduce((best, f) => (boxIou(face.box, f.box) > iou ? Math.max(best, f.score) : best), 0), 0) / looks.length;
      if (score >= agree) kept.push({box: face.box, score, keypoints: face.eyes});
    }
    return merged(kept, iou);
  }

  // The turned looks (`BlazeFaceDetector._turned`): the image turned by each of turned_looks degrees in turn,
  // whole on a canvas that holds it (no tiles, with the second look), until one finds faces; their box centres
  // and eyes turned back, their boxes the same size.
  async turned(image) {
    const {width, height} = image;
    for (const angle of this.settings.turned_looks) {
      const matrix = rotationMatrix((width - 1) / 2, (height - 1) / 2, angle), cos = Math.abs(matrix[0]), sin = Math.abs(matrix[1]);
      const [w, h] = [Math.ceil(width * cos + height * sin), Math.ceil(width * sin + height * cos)];
      matrix[2] += (w - width) / 2;
      matrix[5] += (h - height) / 2;
      const found = await this.look(warpLinear(image, matrix, w, h), false);
      if (!found.length) continue;
      const back = invert(matrix);
      return found.map(({box, score, eyes}) => {
        const [[cx, cy]] = transformPoints(back, [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]);
        const hw = (box[2] - box[0]) / 2, hh = (box[3] - box[1]) / 2;
        return {box: [cx - hw, cy - hh, cx + hw, cy + hh], score, eyes: transformPoints(back, eyes).sort((a, b) => a[0] - b[0]), turned: true};
      });
    }
    return [];
  }
}

// Weighted NMS of candidates, as faces whose eyes are the first two keypoints (image-left first).
function merged(found, iou) {
  return weightedNms(found, iou).map(({box, score, keypoints}) => ({box, score, eyes: keypoints.slice(0, 2).sort((a, b) => a[0] - b[0])}));
}

// MediaPipe's weighted NMS: the surest box absorbs every box overlapping it by more than `iou`, as their
// score-weighted mean (box and keypoints), keeping its own score.
export function weightedNms(found, iou) {
  const order = [...found].sort((a, b) => b.score - a.score);
  const area = (b) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);
  const remaining = order.map(() => true), kept = [];
  for (let i = 0; i < order.length; i++) {
    if (!remaining[i]) continue;
    const a = order[i].box, group = [];
    for (let j = 0; j < order.length; j++) {
      if (!remaining[j]) continue;
      const b = order[j].box;
      const inter = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])) * Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
      if (j === i || inter / Math.max(area(a) + area(b) - inter, 1e-12) > iou) group.push(j);
    }
    const total = group.reduce((s, j) => s + order[j].score, 0);
    const box = [0, 1, 2, 3].map((k) => group.reduce((s, j) => s + order[j].box[k] * order[j].score, 0) / total);
    const keypoints = order[i].keypoints.map((_, p) => [0, 1].map((k) => group.reduce((s, j) => s + order[j].keypoints[p][k] * order[j].score, 0) / total));
    kept.push({box, score: order[i].score, keypoints});
    for (const j of group) remaining[j] = false;
  }
  return kept;
}

// The landmark box from a detector box (`BoxCalibration.apply`): from the eyes where the fit has them.
export function calibratedBox(calibration, box, eyes) {
  const [x0, y0, x1, y1] = box, width = x1 - x0, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  let {dx, dy, scale} = calibration;
  if (eyes && calibration.eyes) {
    const features = [1, ((eyes[0][0] + eyes[1][0]) / 2 - cx) / width, ((eyes[0][1] + eyes[1][1]) / 2 - cy) / width,
      (eyes[1][0] - eyes[0][0]) / width, (eyes[1][1] - eyes[0][1]) / width];
    const fit = [0, 1, 2].map((k) => features.reduce((s, f, i) => s + f * calibration.eyes[i][k], 0));
    [dx, dy, scale] = [fit[0], fit[1], Math.exp(fit[2])];
  }
  const mx = cx + dx * width, my = cy + dy * width, half = scale * width / 2;
  return [mx - half, my - half, mx + half, my + half];
}
