"""The web page's speed in headless Chromium beside `kerakp live` on the same clip and machine (issue 43).

    python scripts/bench_web.py --model 300w-fast --frames 300 --out runs/bench_web.json

1. Throughput: the page reads a synthetic 640 x 480 clip (one face, WebM) frame by frame as fast as it can
   (`?every-frame`: seeking to each frame, not waiting for the video's clock): frames a second of the stages
   (capture, detect, crop, model, smooth, draw; seeking excluded) and of the wall clock, and the mean ms per stage.
2. A 30 fps camera: Chromium's fake camera plays the same clip (.y4m) for as long as it lasts; the frames the
   page read against the frames the camera gave (the rest were dropped).
3. `kerakp live` (`Landmarker.track`, headless, one thread) on the same clip: its FPS and ms per stage.
Prints one JSON object (also written to --out).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from kerakp.data.synthetic import synthetic_video_frames
from kerakp.export import export_model
from kerakp.io import write_json
from kerakp.web import serve

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
STAGES = ("capture", "detect", "crop", "model", "smooth", "draw")


def write_clips(folder: Path, frames: int, seed: int = 0) -> tuple[Path, Path]:
    """The synthetic clip as WebM (VP8, which Chromium plays) and as .y4m (which its fake camera plays)."""
    images = [frame for frame, _ in synthetic_video_frames(frames, 640, 480, seed=seed)]
    webm, y4m = folder / "clip.webm", folder / "clip.y4m"
    writer = cv2.VideoWriter(str(webm), cv2.VideoWriter_fourcc(*"VP80"), 30.0, (640, 480))
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    with open(y4m, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for image in images:
            out.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420).tobytes())
    return webm, y4m


def page_stats(page) -> dict:
    stats = page.evaluate("window.kerakp.stats()")
    ms = {stage: float(np.mean([frame.get(stage, 0.0) for frame in stats["ms"]])) for stage in STAGES}
    return {"frames": stats["frames"], "detector_calls": stats["detectorCalls"], "ms": ms,
            "wall_s": (stats["at"][-1] - stats["at"][0]) / 1000 if stats["frames"] > 1 else 0.0}


def run_page(url: str, webm: Path, y4m: Path, seconds: float, timeout_ms: int) -> dict:
    from playwright.sync_api import sync_playwright

    results = {}
    base = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=base)
        page = browser.new_page()
        page.goto(url + "?every-frame")
        page.evaluate("window.kerakp.ready")
        page.set_input_files("#file", str(webm))
        page.wait_for_function("/frames read$/.test(document.getElementById('status').textContent)", timeout=timeout_ms)
        stats = page_stats(page)
        busy = sum(stats["ms"].values()) / 1000
        stats["fps_stages"] = 1 / busy if busy else 0.0
        stats["fps_wall"] = (stats["frames"] - 1) / stats["wall_s"] if stats["wall_s"] else 0.0
        results["throughput"] = stats
        browser.close()
        camera = playwright.chromium.launch(executable_path=BROWSER, args=base + [
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"])
        page = camera.new_context(permissions=["camera"]).new_page()
        page.goto(url)
        page.evaluate("window.kerakp.ready")
        page.click("#camera")
        page.wait_for_function("window.kerakp.stats().frames >= 1", timeout=timeout_ms)
        started = time.perf_counter()
        time.sleep(seconds)
        page.evaluate("window.kerakp.stop()")
        elapsed = time.perf_counter() - started
        stats = page_stats(page)
        stats["camera_frames"] = round(30 * elapsed) + 1
        stats["dropped"] = max(0, stats["camera_frames"] - stats["frames"])
        results["camera_30fps"] = stats
        camera.close()
    return results


def run_live(model: str, webm: Path, frames: int) -> dict:
    from kerakp.api import Landmarker
    from kerakp.tracking import LiveStats

    stats = LiveStats()
    began = time.perf_counter()
    for _ in Landmarker(model, threads=1).track(str(webm), stats=stats, max_frames=frames):
        pass
    stats.wall_s = time.perf_counter() - began
    summary = stats.summary()
    return {"frames": summary["frames"], "fps": summary["fps"],
            "ms": {stage: v["mean"] for stage, v in summary["latency_ms"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="300w-fast", help="A preset, .tflite or .keras model.")
    parser.add_argument("--frames", type=int, default=300, help="Frames of the 640 x 480 clip.")
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    parser.add_argument("--timeout", type=float, default=600, help="Seconds the page may take per run.")
    args = parser.parse_args()
    if BROWSER is None:
        raise SystemExit("no Chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export_model(args.model, "web", out=folder / "page")
        webm, y4m = write_clips(folder, args.frames)
        server = serve(folder / "page", port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            result = {"model": args.model, "frames": args.frames, "size": "640x480", "date": time.strftime("%Y-%m-%d"),
                      "page": run_page(url, webm, y4m, args.frames / 30, int(args.timeout * 1000)),
                      "live": run_live(args.model, webm, args.frames)}
        finally:
            server.shutdown()
    result["page_vs_live"] = result["page"]["throughput"]["fps_stages"] / result["live"]["fps"] if result["live"]["fps"] else None
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
