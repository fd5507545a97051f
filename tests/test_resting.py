"""dsgd.theory.resting: DSGD's resting point for a constant prediction, checked by brute force."""
import math

import numpy as np
import pytest

from dsgd import schedule
from dsgd.theory.resting import constant_loss, crossing_step, resting_point, threshold_gamma


def _argmin_on_grid(pi, gamma):
    grid = np.linspace(1e-4, 1 - 1e-4, 200_001)
    vals = [constant_loss(p, pi, gamma) for p in grid]
    return float(grid[int(np.argmin(vals))])


def test_threshold_and_prior():
    assert threshold_gamma(0.6) == pytest.approx(2 / 3)
    assert threshold_gamma(0.5) == 1.0
    assert resting_point(0.6, 1.0) == pytest.approx(0.6)  # plain CE rests at the prior
    # hand value of the loss at the prior: the binary entropy of 0.6
    assert constant_loss(0.6, 0.6, 1.0) == pytest.approx(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)))


@pytest.mark.parametrize("pi,gamma", [(0.6, 0.3), (0.6, 0.6), (0.7, 0.2), (0.6, 0.8), (0.8, 0.5), (0.6, 1.0)])
def test_resting_point_matches_brute_force(pi, gamma):
    p_grid = _argmin_on_grid(pi, gamma)
    assert resting_point(pi, gamma) == pytest.approx(p_grid, abs=1e-4)


def test_boundary_side_gap():
    # just above and just below 1/2 the loss differs by (1 - gamma)(2 pi - 1) ln 2
    pi, g, e = 0.6, 0.4, 1e-9
    gap = constant_loss(0.5 - e, pi, g) - constant_loss(0.5 + e, pi, g)
    assert gap == pytest.approx((1 - g) * (2 * pi - 1) * math.log(2), rel=1e-6)


def test_crossing_step_of_the_paper_schedule():
    # linear gamma_t = t/T exceeds 0.399/0.601 = 0.6639 first at t = 100 of 150 (0.6667)
    assert crossing_step(schedule("linear", tau=1.0), 150, 0.60125) == 100
    # 300 steps: 199/300 = 0.66333 already exceeds 0.39875/0.60125 = 0.66320
    assert crossing_step(schedule("linear", tau=1.0), 300, 0.60125) == 199
    # a floor of 0.75 starts above the threshold; tau = 0.5 never reaches it
    assert crossing_step(schedule("linear", tau=1.0, floor=0.75), 150, 0.60125) == 0
    assert crossing_step(schedule("linear", tau=0.5), 150, 0.60125) is None
