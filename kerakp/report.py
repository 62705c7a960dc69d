"""`report.html`: an evaluation to look through in a browser, one self-contained file (images embedded, no
server, no internet): the metrics, the CED, the error of each point drawn on the mean face, the error by head
pose (yaw) and by face size, and a gallery of every face, worst first, with truth and prediction drawn, a page at
a time."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import cv2
import numpy as np

from kerakp.analysis import head_pose
from kerakp.data.dataset import LandmarkSet
from kerakp.data.geometry import level_turn, points_box, rotation
from kerakp.drawing import PREDICTION_BGR, TRUTH_BGR, draw_face
from kerakp.metrics import point_errors

YAW_BANDS = (0, 15, 30, 45, 90)           # degrees, absolute
SIZE_BANDS = (0, 64, 128, 256, 100_000)   # landmark-box side in pixels
THUMB = 144                               # gallery images, pixels a side
PAGE = 24                                 # gallery faces a page


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100, bbox_inches="tight", format="png")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _jpeg(image_rgb: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode()


def mean_face(truth: np.ndarray, schema) -> np.ndarray:
    """(K, 2) the mean of the labelled faces, each moved to its centre, scaled by its normalising distance (its
    box side without one) and turned so its outer eye corners lie level."""
    shapes = []
    for points in truth:
        box = points_box(points)
        if box is None:
            continue
        centred = points - np.nanmean(points, axis=0)
        side = (np.linalg.norm(points[schema.norm[0]] - points[schema.norm[1]]) if schema.norm else max(box[2:] - box[:2]))
        turn = level_turn(points, schema.norm) if schema.norm else 0.0
        if np.isfinite(side) and side > 0:
            shapes.append(centred @ rotation(turn).T / side)
    return np.nanmean(shapes, axis=0)


def _point_figure(shape: np.ndarray, errors: np.ndarray) -> str:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.2, 4.2))
    dots = axis.scatter(shape[:, 0], shape[:, 1], c=errors, s=30 + 600 * errors / max(np.nanmax(errors), 1e-9),
                        cmap="viridis", edgecolors="black", linewidths=0.3)
    for k, (x, y) in enumerate(shape):
        axis.annotate(str(k), (x, y), fontsize=5, ha="center", va="center", color="white")
    axis.invert_yaxis()
    axis.set_aspect("equal")
    axis.axis("off")
    figure.colorbar(dots, ax=axis, shrink=0.7, label="mean error (NME)")
    return _png(figure)


def _bands(values: np.ndarray, nme: np.ndarray, edges, unit: str) -> list[dict]:
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        chosen = (values >= low) & (values < high) & np.isfinite(nme)
        if chosen.any():
            label = f"{low}-{high} {unit}" if high < edges[-1] else f"{low}+ {unit}"
            rows.append({"band": label, "faces": int(chosen.sum()), "nme": float(np.mean(nme[chosen])),
                         "median": float(np.median(nme[chosen])), "failure@0.08": float(np.mean(nme[chosen] > 0.08))})
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                                    for v in row.values()) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _thumbnail(image: np.ndarray, truth: np.ndarray, pred: np.ndarray | None) -> str:
    """The face cut out around its truth and prediction, both drawn (truth blue, prediction orange)."""
    shown = np.concatenate([p for p in (truth, pred) if p is not None])
    box = points_box(shown)
    centre, side = (box[:2] + box[2:]) / 2, 1.4 * max(box[2:] - box[:2]) + 1
    scale = THUMB / side
    matrix = np.array([[scale, 0, THUMB / 2 - scale * centre[0]], [0, scale, THUMB / 2 - scale * centre[1]]])
    crop = cv2.warpAffine(image, matrix, (THUMB, THUMB), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    moved = [None if p is None else p * scale + matrix[:, 2] for p in (truth, pred)]
    crop = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    draw_face(crop, moved[0], color=TRUTH_BGR, radius=1)
    if moved[1] is not None:
        draw_face(crop, moved[1], color=PREDICTION_BGR, radius=1)
    return _jpeg(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))


def write_report(path, data: LandmarkSet, preds: np.ndarray, nme: np.ndarray, detected: np.ndarray, metrics: dict,
                 ced_png: Path, title: str) -> Path:
    """Write the report of one evaluation (`kerakp.evaluate`) to `path`; returns it."""
    schema = data.schema
    predicted = np.isfinite(nme)
    norms = (np.linalg.norm(data.keypoints[:, schema.norm[0]] - data.keypoints[:, schema.norm[1]], axis=-1)
             if schema.norm else np.ones(len(data)))
    per_point = np.nanmean(point_errors(preds[predicted], data.keypoints[predicted]) / norms[predicted, None], axis=0)
    images = [data.image(i) for i in range(len(data))]
    sides = np.array([max(points_box(p)[2:] - points_box(p)[:2]) if points_box(p) is not None else np.nan for p in data.keypoints])
    sections = [f"<h2>Metrics</h2>{_table([{'metric': k, 'value': v} for k, v in metrics.items()])}",
                f"<h2>Cumulative error distribution</h2><img alt='CED' src='data:image/png;base64,"
                f"{base64.b64encode(Path(ced_png).read_bytes()).decode()}'>"]
    if predicted.any() and len(schema.flip) > 1:
        sections.append("<h2>Error per point</h2><p>Each point's mean error over the faces (NME), on the mean face "
                        f"of this set.</p><img alt='error per point' src='{_point_figure(mean_face(data.keypoints, schema), per_point)}'>")
    if "nose_tip" in schema.parts or schema.name == "ibug68":
        yaws = np.array([abs(head_pose(p, image.shape, schema)[0]) for p, image in zip(data.keypoints, images)])
        sections.append(f"<h2>Error by head pose</h2><p>Yaw of the labelled face, absolute.</p>{_table(_bands(yaws, nme, YAW_BANDS, 'deg'))}")
    sections.append(f"<h2>Error by face size</h2><p>Side of the labelled landmarks' box.</p>{_table(_bands(sides, nme, SIZE_BANDS, 'px'))}")
    order = sorted(range(len(data)), key=lambda i: -np.nan_to_num(nme[i], nan=np.inf))   # no face first, then worst
    faces = [{"name": data.names[i], "nme": None if not predicted[i] else round(float(nme[i]), 4), "detected": bool(detected[i]),
              "src": _thumbnail(images[i], data.keypoints[i], preds[i] if predicted[i] else None)} for i in order]
    page = PAGE_TEMPLATE.replace("{{TITLE}}", html.escape(title)).replace("{{SECTIONS}}", "\n".join(sections))
    page = page.replace("{{FACES}}", json.dumps(faces)).replace("{{PAGE}}", str(PAGE))
    Path(path).write_text(page)
    return Path(path)


PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
.legend span { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin: 0 4px 0 12px; }
#gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
figure { margin: 0; font-size: 12px; overflow-wrap: anywhere; } figure img { width: 144px; height: 144px; display: block; }
nav button { font-size: 14px; margin: 0 6px; }
</style></head><body>
<h1>{{TITLE}}</h1>
{{SECTIONS}}
<h2>Every face, worst first</h2>
<p class="legend">Points:<span style="background:#0072B2"></span>truth<span style="background:#E69F00"></span>prediction</p>
<nav><button id="prev">previous</button><span id="where"></span><button id="next">next</button></nav>
<div id="gallery"></div>
<script>
const faces = {{FACES}};
const perPage = {{PAGE}};
let page = 0;
function show() {
  const pages = Math.max(1, Math.ceil(faces.length / perPage));
  page = Math.min(Math.max(page, 0), pages - 1);
  document.getElementById("where").textContent = `page ${page + 1} of ${pages} (${faces.length} faces)`;
  const gallery = document.getElementById("gallery");
  gallery.replaceChildren();
  for (const face of faces.slice(page * perPage, (page + 1) * perPage)) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = face.src;
    img.alt = face.name;
    const caption = document.createElement("figcaption");
    caption.textContent = `${face.name}: ` + (face.nme === null ? "no face found" : `NME ${face.nme.toFixed(4)}`)
      + (face.detected ? "" : " (no detection)");
    figure.append(img, caption);
    gallery.append(figure);
  }
}
document.getElementById("prev").onclick = () => { page -= 1; show(); };
document.getElementById("next").onclick = () => { page += 1; show(); };
show();
</script></body></html>
"""
