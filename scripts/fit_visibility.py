"""Fit how likely each iBUG-68 point is seen at a head pose, from AFLW 21's visible points, and write
kerakp/assets/visibility_ibug68.csv (read by `kerakp.analysis.visibility`).

    python scripts/fit_visibility.py [--data ../shared/data/aflw21] [--model 300w-fast]

A point of kerakp's mean face (kerakp/assets/face3d_ibug68.csv) faces the camera by how much its surface normal
turns towards it once the head is posed: the normal is the mean of the normals of the mesh triangles around it
(a Delaunay mesh of the frontal face) and of the direction from a point behind the face. P(seen) is a logistic of
that facing, with a slope shared by all points and a bias per point: fitted on AFLW's training share (the part
`split_extra` trains on, 85 % by image, seed 0) for the 68 points that AFLW points map to (an eye centre: the
least facing of its six), and for the others taken from the nearest such point on the mean face; each raised
where needed so that a frontal face's points are seen (P >= 0.8 at yaw 0), as 300-W labels every one; the points
only a group holds (an eye's lids, the inner lips) take the bias fitted for their group (eye or mouth centre), and a
point and its mirror image share the mean of their biases and mirrored normals (a head turned either way alike). The head
is posed as `Face.visible` poses it: by the head pose of the landmarks `--model` reads on each training face
(faces it does not find are left out). Posed by AFLW's own yaw instead (the first fit), the held-out AUROC at
30-60 degrees stayed at 0.87-0.88, as high as that yaw itself gives: the fit then learns the labels' pose, not
the pose the landmarks give (BENCHMARKS.md, "Head poses").
"""
from __future__ import annotations

import argparse
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.spatial import Delaunay
from tqdm import tqdm

from kerakp.analysis import face3d, rotation_from
from kerakp.api import Landmarker
from kerakp.data.dataset import split_by_person
from kerakp.data.formats import load_dataset
from kerakp.schemas import CORRESPONDENCES, get_schema

BEHIND = np.array([0.0, 0.5, 0.6])   # a point inside the head, behind the face (eye distance 1)


def normals() -> np.ndarray:
    face = face3d()
    mesh = np.zeros_like(face)
    for a, b, c in Delaunay(face[:, :2]).simplices:
        n = np.cross(face[b] - face[a], face[c] - face[a])
        n = -n if n[2] > 0 else n          # towards the camera (z points away from it)
        mesh[[a, b, c]] += n / np.linalg.norm(n)
    radial = face - BEHIND
    both = mesh / np.linalg.norm(mesh, axis=1, keepdims=True) + radial / np.linalg.norm(radial, axis=1, keepdims=True)
    return both / np.linalg.norm(both, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/aflw21")
    parser.add_argument("--model", default="300w-fast", help="The preset (or model) whose landmarks pose the heads.")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = load_dataset(args.data)
    train, _ = split_by_person(data, 0.15, 0)
    landmarker = Landmarker(args.model)
    poses = []
    for i in tqdm(train, desc=f"{args.model} on AFLW's training share", unit="face"):
        faces = landmarker.predict(data.image(i))
        poses.append(faces[0].pose if faces else (np.nan,) * 3)
    poses = np.array(poses, np.float64)
    posed = np.isfinite(poses).all(axis=1)
    seen = ~np.isnan(data.keypoints[np.array(train)[posed]]).any(axis=-1)        # (N, 21)
    groups = CORRESPONDENCES["aflw21", "ibug68"]
    mapped = [j for j, g in enumerate(groups) if g]
    flip = list(get_schema("ibug68").flip)
    n = normals()
    n = n + n[flip] * [-1, 1, 1]   # a mirror pair's normals mirror each other
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    facing = np.stack([-(n @ rotation_from(*pose).T)[:, 2] for pose in poses[posed]])   # (N, 68)
    x = np.stack([facing[:, list(groups[j])].min(axis=1) for j in mapped], axis=1)  # (N, M)
    y = seen[:, mapped].astype(np.float64)
    slope, bias = 5.0, np.zeros(len(mapped))
    for _ in range(3000):   # logistic regression, one slope and a bias per point, by gradient descent
        p = 1 / (1 + np.exp(-(slope * x + bias)))
        slope -= 0.5 * np.mean((p - y) * x)
        bias -= 0.5 * np.mean(p - y, axis=0)
    per_point = np.empty(68)
    face = face3d()
    anchors = {groups[j][0]: b for j, b in zip(mapped, bias) if len(groups[j]) == 1}   # one point's own bias
    for i in range(68):
        nearest = min(anchors, key=lambda a: np.linalg.norm(face[a] - face[i]))
        per_point[i] = anchors[nearest]
    for j, b in zip(mapped, bias):   # an eye's lids and the inner lips: their group's (eye or mouth centre) bias
        if len(groups[j]) > 1:
            per_point[[i for i in groups[j] if i not in anchors]] = b
    per_point = (per_point + per_point[flip]) / 2   # a head turned either way alike
    # every point of a frontal face is seen (300-W and ytf68 label all 68 there): at least 0.8 at yaw 0
    per_point = np.maximum(per_point, np.log(4) - slope * -n[:, 2])
    out = Path(str(resources.files("kerakp") / "assets" / "visibility_ibug68.csv"))
    header = ("nx,ny,nz,slope,bias: P(seen) = 1 / (1 + exp(-(slope * facing + bias))), facing = -z of the normal turned "
              "by the head pose (scripts/fit_visibility.py)")
    np.savetxt(out, np.column_stack([n, np.full(68, slope), per_point]), delimiter=",", fmt="%.5f", header=header)
    print(f"{posed.sum()} of {len(train)} faces posed; slope {slope:.3f}; biases {np.round(bias, 2).tolist()}; wrote {out}")


if __name__ == "__main__":
    main()
