"""``trunkline perf planner`` at scale 0.01: CI's correctness run of the benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkline.perf.planner import run

pytestmark = pytest.mark.postgres


def test_three_variants_return_identical_rows(tmp_path: Path, postgres_db: str) -> None:
    figures = run(0.01, tmp_path, postgres_db, repeats=1)
    assert figures["identical_results"] is True
    assert set(figures["queries"]) == {"q1", "q3", "q5", "q6", "q10", "q12", "q14", "q18"}
    for key in (
        "geomean_speedup_vs_naive",
        "geomean_speedup_vs_duckdb",
        "worst_ratio_vs_duckdb",
    ):
        assert figures[key] > 0
    q3 = figures["queries"]["q3"]
    assert q3["trunkline"]["plan_hash"] and q3["rows"] == 10
    # Moving the customer-orders join into PostgreSQL moves fewer rows than copying.
    assert q3["trunkline"]["rows_moved"] < q3["naive"]["rows_moved"]
