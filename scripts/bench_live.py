"""Throughput of the live loop, headless, on a synthetic 640x480 video of a moving face.

    python scripts/bench_live.py MODEL.tflite [--frames 300] [--threads 1]

Runs `kerakp live` (the same run_live the command uses) with no window and no recording, so the figure is
processing throughput: capture + tracking (detector only when needed) + model + smoothing + emotion tag.
Writes benchmarks/live.json and the "Live loop" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from report import replace_section


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="synthetic person (the Haar detector misses darker ones)")
    args = parser.parse_args()
    import cv2

    from kerakp.data.synthetic import write_synthetic_video
    from kerakp.inference import Predictor
    from kerakp.live import run_live
    from kerakp.runtime import open_model

    cv2.setNumThreads(args.threads)
    predictor = Predictor(open_model(args.model, args.threads), box="detector", passes=2)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_synthetic_video(Path(tmp) / "face.avi", args.frames, seed=args.seed)
        summary = run_live(predictor, str(video), headless=True)
    report = {"model": str(args.model), "frames": args.frames, "threads": args.threads,
              "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})", **summary}
    Path("benchmarks").mkdir(exist_ok=True)
    Path("benchmarks/live.json").write_text(json.dumps(report, indent=2))
    latency = summary["latency_ms"]
    lines = [f"Command: `python scripts/bench_live.py {args.model} --frames {args.frames} --threads {args.threads}` on "
             f"{report['machine']}: a 640x480 synthetic video (seed {args.seed}), headless, {args.threads} thread(s).", "",
             f"- throughput: **{summary['fps']:.1f} FPS** ({summary['frames']} frames in {summary['wall_s']:.2f} s)",
             f"- detector calls {summary['detector_calls']}, track losses {summary['track_losses']}, "
             f"tags {summary['emotion_counts']}", "",
             "| stage | mean ms | p50 ms | p95 ms |", "|---|---|---|---|"]
    lines += [f"| {stage} | {v['mean']:.2f} | {v['p50']:.2f} | {v['p95']:.2f} |" for stage, v in latency.items()]
    replace_section(Path("BENCHMARKS.md"), "Live loop", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
