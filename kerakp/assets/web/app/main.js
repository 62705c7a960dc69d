// The page: loads the export's JSON and models, reads a photo through kerakp's whole path, or a camera or a
// video through the tracker, draws the faces, shows FPS and ms per stage, and saves the landmarks as CSV or
// JSON. `window.kerakp` lets a test or a script drive it (predictImage, lastFrame, stats).
import {BlazeFace} from "./detect.js";
import {loadKernel} from "./crop.js";
import {drawFaces} from "./draw.js";
import {canvasReader, frameBuffer, lazyFrame, videoReader} from "./frame.js";
import {Model} from "./model.js";
import {FaceTracker, Predictor} from "./track.js";

const $ = (id) => document.getElementById(id);
const say = (text) => { $("status").textContent = text; };
const canvas = $("view"), context = canvas.getContext("2d", {willReadFrequently: true}), video = $("video");
const overlay = $("marks"), marks = overlay.getContext("2d");   // the marks, drawn over the frame (which stays as read)
const STAGES = ["capture", "detect", "crop", "model", "smooth", "draw"];

let settings, predictor, tracker, running = null, last = null;
let rows = [], frames = [];                 // what Save CSV / Save JSON write
const recent = [];                          // the last frames' {ms per stage, wall time}

async function load() {
  settings = await (await fetch("kerakp.json")).json();
  const detector = settings.detector;
  const [landmarks, blazeface, full] = await Promise.all([Model.load(settings.model.file), Model.load(detector.file),
    detector.full && Model.load(detector.full.file), loadKernel()]);
  const options = {...settings.model, ...settings.predict, calibration: detector.calibration};
  predictor = new Predictor(landmarks, newDetector(blazeface, full), options);
  $("title").textContent = `kerakp landmarks: ${settings.model.name} (${settings.model.markup}, ${settings.model.num_points} points)`;
  for (const id of ["camera", "csv", "json"]) $(id).disabled = false;
  say("ready: start the camera, or drop a photo or a video");
}

// A frame of `source` (a video element, image or bitmap) at its own size, its marks cleared, as an image read
// lazily (frame.js). A playing or seeked video is read from its current VideoFrame and shown by the video element
// itself; anything else (or a browser without VideoFrame) is drawn on the canvas, in place of what was there, and
// read from it. Canvases are resized only when the size changes (resizing reallocates them).
function capture(source, width, height) {
  held?.close();   // the last frame read from the video, kept open until now for lastFrame()
  held = source === video && typeof VideoFrame === "function" ? new VideoFrame(video) : null;
  if (held && (held.visibleRect.width !== width || held.visibleRect.height !== height)) {   // scaled to show: drawn instead
    held.close();
    held = null;
  }
  [video.hidden, canvas.hidden] = [!held, Boolean(held)];
  if (overlay.width !== width || overlay.height !== height) [overlay.width, overlay.height] = [width, height];
  marks.clearRect(0, 0, width, height);
  buffer = frameBuffer(width, height, buffer);
  if (held) return lazyFrame(width, height, videoReader(held), buffer);
  if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
  context.globalCompositeOperation = "copy";
  context.drawImage(source, 0, 0, width, height);
  context.globalCompositeOperation = "source-over";
  return lazyFrame(width, height, canvasReader(context), buffer);
}

let buffer = null, held = null;   // the frames' pixels, kept from frame to frame; the VideoFrame read

function resetTimes() {
  predictor.ms = {detect: 0, crop: 0, model: 0};
}

function record(name, faces, image, times) {
  const byArea = [...faces].sort((a, b) => area(b.points) - area(a.points));
  const columns = settings.columns, count = settings.model.num_points;
  const list = byArea.length ? byArea : [null];
  list.forEach((face, k) => {
    const row = {image: name, face: k, found: face ? 1 : 0, detected: face ? 1 : 0};
    for (let p = 0; p < count; p++) {
      row[`x${p}`] = face ? Math.round(face.points[p][0] * 100) / 100 : NaN;
      row[`y${p}`] = face ? Math.round(face.points[p][1] * 100) / 100 : NaN;
      row[`v${p}`] = face?.visible ? Math.round(face.visible[p] * 1000) / 1000 : NaN;
    }
    rows.push(columns.map((c) => row[c]));
  });
  frames.push({image: name, width: image.width, height: image.height, ms: times, at: performance.now(),
    faces: faces.map((f) => ({id: f.id, points: f.points, raw: f.raw ?? f.points, score: f.score, pose: f.pose, visible: f.visible}))});
}

function area(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  return (Math.max(...xs) - Math.min(...xs)) * (Math.max(...ys) - Math.min(...ys));
}

function show(times, wall) {
  recent.push({times, wall});
  if (recent.length > 30) recent.shift();
  const mean = (stage) => recent.reduce((s, r) => s + (r.times[stage] || 0), 0) / recent.length;
  const span = recent.length > 1 ? (recent[recent.length - 1].wall - recent[0].wall) / 1000 : 0;
  const fps = span > 0 ? (recent.length - 1) / span : 0;
  $("stats").textContent = (fps > 0 ? `${fps.toFixed(1)} FPS   ` : "") + STAGES.map((s) => `${s} ${mean(s).toFixed(1)} ms`).join("   ");
}

// One frame through the tracker: the tracks drawn, the frame recorded under `name`.
async function trackFrame(source, width, height, t, name) {
  const times = {}, started = performance.now();
  const image = capture(source, width, height);
  times.capture = performance.now() - started;
  resetTimes();
  const stepStarted = performance.now();
  const tracks = await tracker.step(image, t);
  const spent = performance.now() - stepStarted;
  Object.assign(times, predictor.ms);
  times.smooth = Math.max(0, spent - predictor.ms.detect - predictor.ms.crop - predictor.ms.model);
  const drawStarted = performance.now();
  const faces = tracks.map((track) => ({id: track.id, points: track.points, raw: track.raw}));
  drawFaces(marks, faces, settings.pose, settings.visibility);
  times.draw = performance.now() - drawStarted;
  last = {image, tracks: faces};
  record(name, faces, image, times);
  show(times, performance.now());
}

// A BlazeFace of the JSON's settings (`changes` to them: the tracker's), with the full-range model
// of its second look where the page has one (it reads that model's weak faces, from `floor`).
function newDetector(model, full, changes = {}) {
  const d = settings.detector;
  const second = full ? new BlazeFace(full, {...d.full, min_score: d.floor, iou: d.iou, tiles: false, second_look: false}) : null;
  return new BlazeFace(model, {...d, ...changes}, second);
}

function newTracker() {
  const {model, full} = predictor.detector;
  const live = {turned_looks: []};   // as FaceTracker's detectors: no turned looks on every empty frame
  tracker = new FaceTracker(predictor, newDetector(model, full?.model, live),
    newDetector(model, full?.model, {...live, agree: settings.track.near_agree}), settings.track);
}

async function startCamera() {
  stop();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  } catch (error) {
    say(`no camera (${error.name}: ${error.message}); drop a photo or a video instead`);
    return;
  }
  video.srcObject = stream;
  await video.play();
  newTracker();
  running = {stop: () => stream.getTracks().forEach((t) => t.stop())};
  $("stop").disabled = false;
  say("camera running");
  const began = performance.now();
  let index = 0;
  const loop = async () => {
    if (!running) return;
    await trackFrame(video, video.videoWidth, video.videoHeight, (performance.now() - began) / 1000, `camera#${index++}`);
    video.requestVideoFrameCallback(loop);
  };
  video.requestVideoFrameCallback(loop);
}

// A dropped video, frame by frame: every frame (seeking, as fast as the page can) with `everyFrame`, else at
// the video's own pace (frames the page cannot keep up with are skipped, as a camera's would be).
async function playVideo(file, everyFrame = new URLSearchParams(location.search).has("every-frame")) {
  stop();
  const fps = settings.video_fps;
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  await new Promise((resolve, reject) => { video.onloadeddata = resolve; video.onerror = () => reject(new Error(`${file.name}: this browser cannot play it`)); });
  newTracker();
  let stopped = false;
  running = {stop: () => { stopped = true; video.pause(); }};
  $("stop").disabled = false;
  say(`reading ${file.name}`);
  if (everyFrame) {
    for (let index = 0; !stopped && index / fps < video.duration; index++) {
      video.currentTime = index / fps;
      await new Promise((resolve) => { video.onseeked = resolve; });
      await trackFrame(video, video.videoWidth, video.videoHeight, index / fps, `${file.name}#${index}`);
    }
  } else {
    await video.play();
    await new Promise((resolve) => {
      const loop = async (_, meta) => {
        if (stopped) return resolve();
        await trackFrame(video, video.videoWidth, video.videoHeight, meta.mediaTime, `${file.name}#${Math.round(meta.mediaTime * fps)}`);
        if (video.ended) resolve(); else video.requestVideoFrameCallback(loop);
      };
      video.requestVideoFrameCallback(loop);
      video.onended = () => resolve();
    });
  }
  running = null;
  say(`${file.name}: ${frames.length} frames read`);
}

// Every face of one photo through the whole path (as `Landmarker.predict` reads it).
async function readPhoto(source, name) {
  const bitmap = await createImageBitmap(source, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  const started = performance.now();
  const image = capture(bitmap, bitmap.width, bitmap.height);
  const times = {capture: performance.now() - started};
  resetTimes();
  const faces = await predictor.predictFaces(image);
  Object.assign(times, predictor.ms);
  const drawStarted = performance.now();
  drawFaces(marks, faces, settings.pose, settings.visibility, {radius: Math.max(2, image.width / 300)});
  times.draw = performance.now() - drawStarted;
  last = {image, tracks: faces};
  record(name, faces, image, times);
  show(times, performance.now());
  say(`${name}: ${faces.length} face${faces.length === 1 ? "" : "s"}`);
  return faces;
}

function stop() {
  if (running) running.stop();
  running = null;
  $("stop").disabled = true;
}

async function open(file) {
  try {
    if (file.type.startsWith("video/") || /\.(mp4|webm|mkv|avi|mov|ogv)$/i.test(file.name)) await playVideo(file);
    else await readPhoto(file, file.name);
  } catch (error) {
    say(`${file.name}: ${error.message}`);
  }
}

function save(name, text, type) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], {type}));
  link.download = name;
  link.click();
}

function csvText() {
  const cell = (v) => (typeof v === "number" ? (Number.isNaN(v) ? "" : String(v)) : /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return [settings.columns.join(","), ...rows.map((row) => row.map(cell).join(","))].join("\n") + "\n";
}

function pngOf(image) {
  const out = document.createElement("canvas");
  out.width = image.width;
  out.height = image.height;
  const data = new ImageData(image.width, image.height), ch = image.channels;
  for (let i = 0, j = 0; i < data.data.length; i += 4, j += ch) {
    data.data[i] = image.data[j]; data.data[i + 1] = image.data[j + 1]; data.data[i + 2] = image.data[j + 2]; data.data[i + 3] = 255;
  }
  out.getContext("2d").putImageData(data, 0, 0);
  return out.toDataURL("image/png");
}

$("camera").onclick = startCamera;
$("stop").onclick = stop;
$("csv").onclick = () => save("landmarks.csv", csvText(), "text/csv");
$("json").onclick = () => save("landmarks.json", JSON.stringify({markup: settings.model.markup, frames}), "application/json");
$("file").onchange = (event) => event.target.files[0] && open(event.target.files[0]);
const drop = $("drop");
drop.ondragover = (event) => { event.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files[0]) open(event.dataTransfer.files[0]);
};

const ready = load().catch((error) => { say(`cannot start: ${error.message}`); throw error; });
window.kerakp = {
  ready,
  get settings() { return settings; },
  // every face of the image at `url` through the whole path: [{points, box, score, flipNme, confidence, pose, visible}]
  predictImage: async (url) => readPhoto(await (await fetch(url)).blob(), url.split("/").pop()),
  // the last frame read (as a PNG data URL), its tracks' raw and smoothed points, and the whole path's faces on it
  lastFrame: async () => {
    if (!last) return null;
    await last.image.fill?.();
    return {png: pngOf(last.image), tracks: last.tracks.map((t) => ({id: t.id, raw: t.raw ?? t.points, points: t.points, confidence: t.confidence, pose: t.pose, visible: t.visible})),
      faces: (await predictor.predictFaces(last.image)).map((f) => f.points)};
  },
  // the images at `urls` as a video's frames (at the JSON's video_fps) through a new tracker: per frame, its tracks
  trackImages: async (urls) => {
    newTracker();
    const read = [];
    for (const [index, url] of urls.entries()) {
      const bitmap = await createImageBitmap(await (await fetch(url)).blob(), {colorSpaceConversion: "none", premultiplyAlpha: "none"});
      await trackFrame(bitmap, bitmap.width, bitmap.height, index / settings.video_fps, url.split("/").pop());
      read.push(last.tracks.map((t) => ({id: t.id, raw: t.raw, points: t.points, visible: t.visible})));
    }
    return read;
  },
  stats: () => ({frames: frames.length, detectorCalls: tracker?.detectorCalls ?? 0, ms: frames.map((f) => f.ms), at: frames.map((f) => f.at)}),
  csv: csvText,
  startCamera,
  stop,
};
