"""Every markup's flip map: an involution that sends each side's points to the other side's indices."""
import numpy as np
import pytest

from kerakp.data.synthetic import synthetic_face
from kerakp.errors import KerakpError
from kerakp.schemas import SCHEMAS, Schema, convert_points, get_schema, schema_for_points


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_flip_twice_is_identity(name):
    schema = get_schema(name)
    flip = np.array(schema.flip)
    assert (flip[flip] == np.arange(schema.num_points)).all()
    points = np.random.default_rng(0).uniform(0, 100, (schema.num_points, 2))
    assert np.allclose(schema.flip_points(schema.flip_points(points, 100), 100), points)


def _left_right_parts(schema: Schema) -> list[tuple[str, str]]:
    return [(p, p.replace("left", "right")) for p in schema.parts if "left" in p and p.replace("left", "right") in schema.parts]


@pytest.mark.parametrize("name", ["ibug68"] + sorted(n for n, s in SCHEMAS.items() if s.canonical and s.num_points > 1))
def test_flipped_left_points_land_on_right_indices(name):
    """Mirror a frontal face: what was the left eye must now sit at the right-eye indices, on the right side.
    (IMM 58 has no synthetic face; tests/test_formats.py checks its flip map on the real photos.)"""
    schema = get_schema(name)
    face = synthetic_face(np.random.default_rng(3), expression="neutral", roll_range=0.0)
    points = convert_points(face["points"], get_schema("ibug68"), schema)
    assert points.shape == (schema.num_points, 2)
    width = face["image"].shape[1]
    flipped = schema.flip_points(points, width)
    pairs = _left_right_parts(schema)
    assert pairs, f"{name} names no left/right parts"
    for left, right in pairs:
        left_idx, right_idx = list(schema.part(left)), list(schema.part(right))
        # the mirrored left part is where the right part's indices now point, as a set of positions
        expected = np.sort(width - 1 - points[left_idx, 0])
        assert np.allclose(np.sort(flipped[right_idx, 0]), expected)
        # and after the flip the image-left part is still on the image's left
        assert flipped[left_idx, 0].mean() < flipped[right_idx, 0].mean()


def test_ibug68_pairs_are_symmetric_on_a_frontal_face():
    """On a frontal synthetic face (no roll), each point's flip partner is its mirror image."""
    schema = get_schema("ibug68")
    face = synthetic_face(np.random.default_rng(5), expression="neutral", roll_range=0.0)
    points = face["points"]
    centre_x = points[[27, 28, 29, 30, 33, 51, 57, 62, 66, 8], 0].mean()
    mirrored = points.copy()
    mirrored[:, 0] = 2 * centre_x - mirrored[:, 0]
    side = np.linalg.norm(points[36] - points[45])
    assert np.abs(mirrored[list(schema.flip)] - points).max() < 0.08 * side


def test_unknown_markup_and_missing_part_are_clear():
    with pytest.raises(KerakpError, match="unknown markup 'imm99'"):
        get_schema("imm99")
    with pytest.raises(KerakpError, match="markup 'five' has no 'upper_lip_inner'"):
        get_schema("five").part("upper_lip_inner")
    with pytest.raises(KerakpError, match="no single known markup has 7 points"):
        schema_for_points(7)


def test_a_bad_flip_map_is_refused():
    with pytest.raises(ValueError, match="not a permutation"):
        Schema("bad", 3, (0, 0, 1), (0, 1))
