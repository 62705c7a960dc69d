"""KeypointSequence: batch shapes, flips that swap sides, reproducibility, masks, and the exact inverse crop."""
import numpy as np
import pytest

from kerakp.codecs import decode_regression, encode_regression
from kerakp.data.augment import Augment
from kerakp.data.geometry import crop_from_box, crop_matrix, points_box, transform_points, warp
from kerakp.data.sequence import KeypointSequence
from kerakp.model_info import CropRule

NO_AUGMENT = dict(flip=0.0, rotation=0.0, scale=0.0, translate=0.0, shear=0.0, brightness=0.0, contrast=0.0)


def test_batch_shapes_and_ranges(synthetic_set):
    seq = KeypointSequence(synthetic_set, CropRule(64), batch_size=10, augment=Augment())
    assert len(seq) == 5
    crops, targets = seq[0]
    assert crops.shape == (10, 64, 64, 3) and crops.dtype == np.float32
    assert targets.shape == (10, 136)
    assert 0 <= crops.min() and crops.max() <= 255
    assert seq[4][0].shape[0] == 8  # the last, partial batch


def test_targets_fall_inside_the_crop(synthetic_set):
    crops, targets = KeypointSequence(synthetic_set, CropRule(64), batch_size=48)[0]
    assert 0.0 < np.nanmin(targets) and np.nanmax(targets) < 1.0
    # crop_scale 1.25: the landmark box spans 1 / 1.25 of the crop along its longer side
    points = targets.reshape(48, 68, 2)
    span = (points.max(axis=1) - points.min(axis=1)).max(axis=1)
    assert np.allclose(span, 1 / 1.25, atol=0.02)


def test_a_flip_mirrors_the_image_and_swaps_the_sides(synthetic_set):
    plain = KeypointSequence(synthetic_set, CropRule(64), batch_size=4, augment=Augment(**NO_AUGMENT))
    flipped = KeypointSequence(synthetic_set, CropRule(64), batch_size=4, augment=Augment(**{**NO_AUGMENT, "flip": 1.0}))
    crop, points, _ = plain.sample(0)
    crop_f, points_f, _ = flipped.sample(0)
    assert np.abs(crop_f - crop[:, ::-1]).mean() < 1.0
    flip = list(synthetic_set.schema.flip)
    assert np.allclose(points_f[:, 0], (63 - points[:, 0])[flip], atol=1e-6)
    left_eye, right_eye = list(synthetic_set.schema.part("left_eye")), list(synthetic_set.schema.part("right_eye"))
    assert points_f[left_eye, 0].mean() < points_f[right_eye, 0].mean()


def test_upright_crops_level_the_outer_eye_corners_about_the_crop_centre(synthetic_set):
    plain = KeypointSequence(synthetic_set, CropRule(64), batch_size=4)
    upright = KeypointSequence(synthetic_set, CropRule(64, upright=True), batch_size=4)
    left, right = synthetic_set.schema.norm
    tilts = []
    for i in range(8):
        (_, points, _), (_, level, _) = plain.sample(i), upright.sample(i)
        tilts.append(np.degrees(np.arctan2(*(points[right] - points[left])[::-1])))
        assert abs(level[right, 1] - level[left, 1]) < 1e-6 and level[right, 0] > level[left, 0]
        centre = (points_box(points)[:2] + points_box(points)[2:]) / 2   # the crop centre, where the turn pivots
        assert np.allclose(np.linalg.norm(level - centre, axis=1), np.linalg.norm(points - centre, axis=1))
    assert np.ptp(tilts) > 5   # the synthetic faces are tilted, so the check above is not idle


def test_same_seed_same_batches_new_epoch_new_batches(synthetic_set):
    def batch(seed, epochs=0):
        seq = KeypointSequence(synthetic_set, CropRule(48), batch_size=8, augment=Augment(), shuffle=True, seed=seed)
        for _ in range(epochs):
            seq.on_epoch_end()
        return seq[1]

    a, b = batch(3), batch(3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
    assert not np.array_equal(a[1], batch(3, epochs=1)[1], equal_nan=True)
    assert not np.array_equal(a[1], batch(4)[1], equal_nan=True)


def test_missing_points_stay_masked(synthetic_set):
    data = synthetic_set.subset(range(4))
    data.keypoints = data.keypoints.copy()
    data.keypoints[0, 10:20] = np.nan
    no_flip = Augment(**{**Augment().to_dict(), "flip": 0.0})
    _, targets = KeypointSequence(data, CropRule(48), batch_size=4, augment=no_flip)[0]
    assert np.isnan(targets[0, 20:40]).all() and not np.isnan(targets[0, :20]).any()
    assert not np.isnan(targets[1:]).any()
    _, flipped = KeypointSequence(data, CropRule(48), batch_size=4, augment=Augment(**{**NO_AUGMENT, "flip": 1.0}))[0]
    missing = np.isnan(flipped[0].reshape(68, 2)).all(axis=1)
    assert np.array_equal(np.flatnonzero(missing), np.sort(np.array(data.schema.flip)[10:20]))


def test_images_are_decoded_once(synthetic_set, monkeypatch):
    import kerakp.data.dataset as dataset

    calls = []
    real = dataset.read_image
    monkeypatch.setattr(dataset, "read_image", lambda path: calls.append(path) or real(path))
    seq = KeypointSequence(synthetic_set, CropRule(32), batch_size=8, augment=Augment())
    seq[0], seq[0], seq.on_epoch_end(), seq[0]
    assert len(calls) == 8


def test_threads_share_the_cache_and_build_the_batches_one_thread_builds(synthetic_set):
    from concurrent.futures import ThreadPoolExecutor

    alone = KeypointSequence(synthetic_set, CropRule(32), batch_size=4, augment=Augment(), shuffle=True, cache_mb=0.05)
    shared = KeypointSequence(synthetic_set, CropRule(32), batch_size=4, augment=Augment(), shuffle=True, cache_mb=0.05)
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(shared.__getitem__, list(range(len(shared))) * 3))
    for index, (crops, targets) in enumerate(batches):
        expected = alone[index % len(alone)]
        assert np.array_equal(crops, expected[0]) and np.array_equal(targets, expected[1], equal_nan=True)
    assert shared.cached_bytes <= shared.cache_bytes and shared.cached_bytes == sum(i.nbytes for i in shared._images.values())


def test_batches_split_evenly_over_the_devices_and_drop_only_what_cannot(synthetic_set):
    """48 faces in batches of 10: one device and two see the same 5 batches (the last of 8); five devices keep 5 of
    the last 8; in batches of 9 over nine devices the 3 left over (fewer than one each) are dropped."""
    seen = {}
    for batch, devices, sizes in ((10, 1, [10, 10, 10, 10, 8]), (10, 2, [10, 10, 10, 10, 8]), (10, 5, [10, 10, 10, 10, 5]),
                                  (9, 9, [9, 9, 9, 9, 9])):
        sequence = KeypointSequence(synthetic_set, CropRule(32), batch_size=batch, devices=devices, shuffle=True)
        assert [len(sequence[i][0]) for i in range(len(sequence))] == sizes, devices
        seen[devices] = np.concatenate([sequence.batch_indices(i) for i in range(len(sequence))])
    assert np.array_equal(seen[1], seen[2]) and len(set(seen[1])) == 48


@pytest.mark.parametrize("side, size", [(37.3, 64), (250.0, 128), (90.0, 96)])
def test_crop_round_trip_is_exact(rng, side, size):
    """Original pixels -> crop pixels -> targets -> decoded -> original pixels: error < 1e-3 px."""
    points = rng.uniform(100, 100 + side, (68, 2))
    matrix = crop_matrix(crop_from_box(points_box(points), 1.25), size)
    back = transform_points(np.linalg.inv(matrix),
                            decode_regression(encode_regression(transform_points(matrix, points), size), size))
    assert np.abs(back - points).max() < 1e-3


def test_warp_puts_pixels_where_the_matrix_says(rng):
    """A bright dot at an original position lands at the transformed position in the crop, large or small scale."""
    for side in (40.0, 400.0):
        image = np.zeros((600, 600, 3), np.uint8)
        dot = np.array([150, 250]) + 0.3 * side
        row, col = int(dot[1]), int(dot[0])
        image[row - 1:row + 2, col - 1:col + 2] = 255
        matrix = crop_matrix(crop_from_box(np.array([150, 250, 150 + side, 250 + side]), 1.25), 64)
        crop = warp(image, matrix, 64).astype(float).sum(axis=2)
        ys, xs = np.nonzero(crop)
        found = np.array([np.average(xs, weights=crop[ys, xs]), np.average(ys, weights=crop[ys, xs])])
        assert np.abs(found - transform_points(matrix, np.array([col, row], float))).max() < 0.35


def test_occlusion_paints_one_block_and_keeps_the_points(synthetic_set):
    plain = KeypointSequence(synthetic_set, CropRule(64), batch_size=4, augment=Augment(**NO_AUGMENT))
    occluded = KeypointSequence(synthetic_set, CropRule(64), batch_size=4, augment=Augment(**{**NO_AUGMENT, "occlusion": 1.0}))
    for index in range(4):
        (crop, points, _), (crop_o, points_o, _) = plain.sample(index), occluded.sample(index)
        assert np.array_equal(points, points_o)
        changed = np.argwhere(np.abs(crop_o - crop).max(axis=-1) > 0)
        rows, cols = np.ptp(changed, axis=0) + 1
        assert 0.15 * 64 - 1 <= min(rows, cols) and max(rows, cols) <= 0.4 * 64  # one block of the promised size
        assert len(changed) <= rows * cols


def test_camera_degradations_keep_the_points_and_a_dark_crop_is_exposed_as_inference_exposes_it(synthetic_set):
    from kerakp.data.augment import DARK, expose

    plain = KeypointSequence(synthetic_set, CropRule(64), batch_size=4, augment=Augment(**NO_AUGMENT))
    for key in ("low_light", "noise", "blur", "small"):
        degraded = KeypointSequence(synthetic_set, CropRule(64), batch_size=4, augment=Augment(**{**NO_AUGMENT, key: 1.0}))
        for index in range(3):
            (crop, points, matrix), (crop_d, points_d, matrix_d) = plain.sample(index), degraded.sample(index)
            assert np.array_equal(points, points_d) and np.array_equal(matrix, matrix_d)
            assert np.abs(crop_d - crop).mean() > 0.5
            if key == "low_light":   # darkened to 5-30 %, then brought back up to a mean of twice DARK at most
                assert crop_d.mean() < crop.mean() and crop_d.mean() <= 2 * DARK + 1
            else:                    # in whole grey levels, as a camera gives them
                assert np.array_equal(crop_d, np.round(crop_d))
    dim = np.full((8, 8, 3), 10, np.uint8)
    assert expose(dim).mean() == pytest.approx(40, abs=1) and expose(dim + 100) is not None
    assert np.array_equal(expose(dim + 100), dim + 100)


def test_a_subsampled_extra_set_keeps_its_share_and_changes_faces_each_epoch(synthetic_set):
    from kerakp.train import extra_draws

    pool, count = extra_draws(0.5, 20, len(synthetic_set) - 20)   # 20 main faces, the rest an extra set: 20 drawn
    assert count == 20 and pool[0] == 20 and extra_draws(0.0, 20, 28) is None and extra_draws(0.5, 20, 0) is None
    seq = KeypointSequence(synthetic_set, CropRule(64), batch_size=10, shuffle=True, subsample=(pool, count))
    orders = []
    for _ in range(2):
        order = np.concatenate([seq.batch_indices(b) for b in range(len(seq))])
        assert len(seq) == 4 and len(set(order)) == 40 and set(range(20)) <= set(order)   # every main face, once
        orders.append(set(order) - set(range(20)))
        seq.on_epoch_end()
    assert orders[0] != orders[1]   # a fresh draw of the extra faces
