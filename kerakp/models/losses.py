"""Loss registry: name -> the elementwise loss of a coordinate error (`MaskedKeypointLoss` in
`kerakp.models.custom` averages it over the labelled coordinates), and the contour lines a relaxed loss slides
along. The table loads no Keras (the command line lists it); the functions use `keras.ops` when they run."""
from __future__ import annotations

import math

CONTOUR_PARTS = ("jaw", "left_brow", "right_brow", "nose_bridge")   # open lines whose points may slide along them


def huber(err, delta: float, wing_w: float, wing_epsilon: float):
    """Quadratic below `delta` (crop fractions), linear beyond."""
    from keras import ops

    return ops.where(err < delta, 0.5 * ops.square(err), delta * (err - 0.5 * delta))


def mse(err, delta: float, wing_w: float, wing_epsilon: float):
    from keras import ops

    return ops.square(err)


def wing(err, delta: float, wing_w: float, wing_epsilon: float):
    """Logarithmic below `wing_w`, linear beyond (Feng et al. 2018): small errors keep pulling."""
    from keras import ops

    c = wing_w - wing_w * math.log(1 + wing_w / wing_epsilon)
    return ops.where(err < wing_w, wing_w * ops.log(1 + err / wing_epsilon), err - c)


LOSSES = {"huber": huber, "mse": mse, "wing": wing}   # (|error|, delta, wing_w, wing_epsilon) -> loss


def contour_neighbours(schema) -> list[list[int]]:
    """Per point, [previous, next] along its contour line (`CONTOUR_PARTS` the markup has; an end point
    names itself once), or [] off the contours."""
    neighbours = [[] for _ in range(schema.num_points)]
    for name in CONTOUR_PARTS:
        line = schema.parts.get(name, ())
        for j, point in enumerate(line if len(line) > 1 else ()):
            neighbours[point] = [line[max(j - 1, 0)], line[min(j + 1, len(line) - 1)]]
    return neighbours
