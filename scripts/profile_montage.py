"""A montage of profiled faces (`kerakp profile`): each face cropped around its points, the points drawn filled
where seen and hollow where hidden (visibility.csv), its yaw above it. Look at one before training on a set.

    python scripts/profile_montage.py benchmarks/profile_montage.png PROFILED_DIR [PROFILED_DIR ...] [--count 20]

With several folders, an equal share of the faces comes from each.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import pandas as pd

from kerakp.data.formats import load_dataset
from kerakp.data.geometry import box_crop_matrix, transform_points, warp
from kerakp.drawing import draw_face

TILE, COLUMNS = 160, 5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    tiles = []
    for k, folder in enumerate(args.folders):
        share = args.count * (k + 1) // len(args.folders) - args.count * k // len(args.folders)
        tiles += montage_tiles(folder, share)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % COLUMNS)
    rows = [np.concatenate(tiles[r:r + COLUMNS], axis=1) for r in range(0, len(tiles), COLUMNS)]
    cv2.imwrite(args.out, cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))
    print(f"{len(tiles)} tiles: {args.out}")


def montage_tiles(folder: str, count: int) -> list[np.ndarray]:
    """`count` faces spread over a profiled set, each cropped and drawn."""
    data = load_dataset(folder)
    seen = pd.read_csv(f"{folder}/visibility.csv").set_index("image")
    tiles = []
    for i in np.linspace(0, len(data) - 1, min(count, len(data))).round().astype(int):
        matrix = box_crop_matrix(data.crop_box(i), 1.6, TILE)
        tile = np.ascontiguousarray(warp(data.image(i), matrix, TILE))
        row = seen.loc[data.names[i]]
        draw_face(tile, transform_points(matrix, data.keypoints[i]), color=(0, 255, 0), radius=2,
                  seen=row[[f"v{k}" for k in range(68)]].to_numpy() > 0.5)
        cv2.putText(tile, f"yaw {row['yaw']:+.0f} pitch {row['pitch']:+.0f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    return tiles


if __name__ == "__main__":
    main()
