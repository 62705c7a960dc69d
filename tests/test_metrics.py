"""End-to-end metrics against hand-computed cases."""
import numpy as np
import pytest

from kerakp.metrics import auc, ced_curve, per_image_nme, summarize
from kerakp.schemas import get_schema

FIVE = get_schema("five")  # normaliser: points 0 and 1


def _truth():
    truth = np.zeros((2, 5, 2))
    truth[:, 1] = [10.0, 0.0]  # eye-corner distance 10 px
    truth[:, 2:] = [[5, 5], [2, 8], [8, 8]]
    return truth


def test_nme_pck_mae_rmse_by_hand():
    truth = _truth()
    pred = truth.copy()
    pred[0, 2, 0] += 3.0    # image 0: one point 3 px off (0.3 of the norm) -> NME 3 / 5 / 10 = 0.06
    pred[1, 3] += [0, 0.8]  # image 1: one point 0.8 px off (0.08 of the norm) -> NME 0.016
    assert np.allclose(per_image_nme(pred, truth, FIVE), [0.06, 0.016])
    m = summarize(pred, truth, FIVE)
    assert m["images"] == 2 and m["nme"] == pytest.approx(0.038) and m["nme_median"] == pytest.approx(0.038)
    assert m["pck@0.05"] == pytest.approx(8 / 10) and m["pck@0.10"] == pytest.approx(9 / 10)
    assert m["mae_px"] == pytest.approx((3.0 + 0.8) / 20)
    assert m["rmse_px"] == pytest.approx(np.sqrt((9 + 0.64) / 20))
    assert m["mean_point_error_px"] == pytest.approx(3.8 / 10)
    assert m["failure@0.08"] == 0.0
    assert m["auc@0.08"] == pytest.approx(((1 - 0.06 / 0.08) + (1 - 0.016 / 0.08)) / 2)


def test_missing_points_are_ignored():
    truth, pred = _truth(), _truth()
    pred[0, 4] += [4, 0]
    truth[1, 4] = np.nan
    pred[1, 4] = [1e6, 1e6]
    nme = per_image_nme(pred, truth, FIVE)
    assert nme[0] == pytest.approx(4 / 5 / 10) and nme[1] == 0.0
    assert summarize(pred, truth, FIVE)["mae_px"] == pytest.approx(4 / 18)


def test_auc_equals_the_area_under_the_ced():
    nme = np.array([0.0, 0.02, 0.05, 0.07, 0.2])
    x, y = ced_curve(nme, 0.08, steps=8000)
    assert auc(nme, 0.08) == pytest.approx(np.trapezoid(y, x) / 0.08, abs=1e-3)
    assert y[-1] == pytest.approx(0.8) and y[0] == pytest.approx(0.2)
    assert auc(np.array([0.0]), 0.5) == 1.0 and auc(np.array([0.6]), 0.5) == 0.0


def test_box_nme_divides_by_the_square_root_of_the_true_box_area_and_holds_on_a_profile():
    from kerakp.metrics import box_nme

    truth = np.array([[[0.0, 0.0], [40.0, 0.0], [40.0, 90.0], [0.0, 90.0]]] * 2)
    truth[1, :, 0] = [0.0, 0.0, 40.0, 40.0]   # both "eye corners" at one x, as on a profile: still defined
    assert np.allclose(box_nme(truth + [3.0, 4.0], truth), 5.0 / 60.0)
