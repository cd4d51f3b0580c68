"""Stars settled without the LAP solver give exactly the official lapjv matching, ties and limits included."""
from __future__ import annotations

import lap
import numpy as np
import pytest

from int8track.tracker import matching
from int8track.tracker.matching import star_matches

from tracker_reference import linear_assignment

THRESH = 0.8


def official_pairs(cost: np.ndarray, thresh: float) -> set[tuple[int, int]]:
    """Matched pairs of the official call on the full matrix."""
    _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    return {(row, col) for row, col in enumerate(row_to_col.tolist()) if col >= 0}


def total_cost(cost: np.ndarray, pairs: set[tuple[int, int]], thresh: float) -> float:
    """The objective lapjv minimises: matched costs plus half the limit per unmatched row and column."""
    unmatched = sum(cost.shape) - 2 * len(pairs)
    return sum(cost[row, col] for row, col in pairs) + unmatched * thresh / 2


def star_heavy_costs(rng: np.random.Generator, values: np.ndarray | None) -> np.ndarray:
    """Sparse costs made of small stars (1 x k, k x 1) and some 2 x 2 blocks, drawn from ``values``
    (None: uniform in [0, 1), all distinct)."""
    rows, cols = rng.integers(2, 12, 2)
    cost = np.ones((rows, cols))
    row, col = 0, 0
    while row < rows and col < cols:
        height, width = (1, int(rng.integers(1, 4))) if rng.random() < 0.5 else (int(rng.integers(1, 4)), 1)
        if rng.random() < 0.2:
            height, width = 2, 2
        block = rng.uniform(0, 1, (height, width)) if values is None else rng.choice(values, size=(height, width))
        cost[row : row + height, col : col + width] = block[: rows - row, : cols - col]
        row, col = row + height, col + width
    return cost[rng.permutation(rows)][:, rng.permutation(cols)]


def assignments(cost: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> list[set[tuple[int, int]]]:
    """Matched pairs of ``linear_assignment`` on the plain-Python path and on the vectorised path."""
    results = []
    for small in (matching.SMALL_ASSIGNMENT, 0):
        monkeypatch.setattr(matching, "SMALL_ASSIGNMENT", small)
        rows, cols, free_rows, free_cols = linear_assignment(cost, THRESH)
        assert sorted([*rows.tolist(), *free_rows.tolist()]) == list(range(cost.shape[0]))
        assert sorted([*cols.tolist(), *free_cols.tolist()]) == list(range(cost.shape[1]))
        results.append(set(zip(rows.tolist(), cols.tolist())))
    return results


@pytest.mark.parametrize("seed", range(150))
def test_star_shortcuts_equal_official_lapjv(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct costs (a unique optimum): exactly the official pairs."""
    rng = np.random.default_rng(seed)
    cost = star_heavy_costs(rng, None)
    expected = official_pairs(cost, THRESH)
    for pairs in assignments(cost, monkeypatch):
        assert pairs == expected


@pytest.mark.parametrize("seed", range(150))
def test_star_shortcuts_stay_optimal_with_ties_and_limit_costs(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tied costs and costs exactly at the limit: an optimum of the official objective (the solver decides ties)."""
    rng = np.random.default_rng(1000 + seed)
    cost = star_heavy_costs(rng, np.array([0.1, 0.3, 0.3, 0.3, THRESH, THRESH, 0.95, *rng.uniform(0, 1, 3)]))
    best = total_cost(cost, official_pairs(cost, THRESH), THRESH)
    for pairs in assignments(cost, monkeypatch):
        assert all(cost[row, col] <= THRESH for row, col in pairs)
        assert total_cost(cost, pairs, THRESH) == pytest.approx(best, abs=1e-12)


def test_star_matches_leave_ties_and_limits_to_the_solver() -> None:
    # Row 0 sees columns 0, 1 at a clear winner; column 2 sees rows 1, 2 tied; row 3 sits at the limit;
    # rows 4, 5 and columns 3, 4 form a 2 x 2 block (not a star).
    rows = [0, 0, 1, 2, 3, 4, 4, 5, 5]
    cols = [0, 1, 2, 2, 5, 3, 4, 3, 4]
    costs = [0.2, 0.5, 0.4, 0.4, THRESH, 0.1, 0.2, 0.3, 0.1]
    matches, hard = star_matches(rows, cols, costs, THRESH)
    assert matches == [(0, 0)]
    assert sorted(hard) == [2, 3, 4, 5, 6, 7, 8]
    # Within the margin counts as a tie; beyond it the cheaper pair wins.
    assert star_matches([1, 2], [2, 2], [0.4, 0.4 + matching.TIE_MARGIN / 2], THRESH) == ([], [0, 1])
    assert star_matches([1, 2], [2, 2], [0.4 + 2 * matching.TIE_MARGIN, 0.4], THRESH) == ([(2, 2)], [])
