"""The benchmarks' shared arithmetic and formatting: percentiles, medians, ratios, cells and tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.common import Result, fmt, markdown_table, median, outputs, percentile, ratio


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(min_value=0, max_value=100),
)
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_percentile_endpoints_and_interpolation() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile([7.0], 95) == 7.0


@pytest.mark.parametrize("bad", [-1.0, 100.5])
def test_percentile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], bad)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_median_ignores_one_outlier_trial() -> None:
    assert median([10.0, 11.0, 500.0]) == 11.0
    with pytest.raises(ValueError):
        median([])


def test_ratio_of_zero_denominator_is_nan_and_renders_na() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert math.isnan(ratio(1.0, 0.0))
    assert fmt(ratio(1.0, 0.0)) == "n/a"
    assert fmt(None) == "n/a"


@pytest.mark.parametrize(
    ("value", "digits", "cell"),
    [
        (1234.5678, 3, "1,235"),
        (12.345, 3, "12.3"),
        (0.012345, 3, "0.0123"),
        (0.0, 3, "0"),
        (42, 3, "42"),
        (1.96, 2, "2.0"),
    ],
)
def test_fmt_significant_figures(value: float, digits: int, cell: str) -> None:
    assert fmt(value, digits) == cell


def test_markdown_table_pads_columns_and_checks_rows() -> None:
    table = markdown_table(["a", "long header"], [["1", "x"], ["22222", "y"]])
    lines = table.splitlines()
    assert lines[0] == "| a     | long header |"
    assert lines[1] == "| ----- | ----------- |"
    assert lines[3] == "| 22222 | y           |"
    assert len({len(line) for line in lines}) == 1
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [["only one"]])


def test_result_round_trips_through_json(tmp_path: Path) -> None:
    result = Result("x", "X", {"cpu": "c"}, {"k": [1, 2]}, "| t |", ["img/x.png"], ["n"])
    path = result.save(tmp_path)
    assert Result.load(path) == result


def test_report_is_the_section_then_one_line_per_note() -> None:
    machine = {"cpu": "EPYC", "cores": 2, "date": "2026-11-22 20:40 UTC"}
    report = Result("x", "X bench", machine, {}, "| t |", [], ["first", "second"]).report()
    lines = report.splitlines()
    assert lines[0] == "## X bench" and "| t |" in lines
    assert lines[-2:] == ["Note: first", "Note: second"]


def test_quick_outputs_never_touch_the_docs_page() -> None:
    quick, full = outputs(True), outputs(False)
    assert full.page.name == "benchmarks.md" and full.page.parent.name == "docs"
    assert quick.page != full.page and quick.images != full.images and quick.results != full.results


def test_page_lists_results_in_order_and_says_what_was_not_measured() -> None:
    from bench.run_all import render_page

    machine = {"cpu": "AMD EPYC", "cores": 2, "python": "3.11", "date": "2026-11-22 20:40 UTC"}
    results = {
        "rollout": Result("rollout", "Rollout cost", machine, {}, "| r |", ["img/rollout-gpus.png"], ["n1"]),
        "serving": Result("serving", "Serving throughput (CPU)", machine, {}, "| s |", [], []),
    }
    page = render_page(results, {"operator": "`bench/operator_scale.py` exited with 1"})
    assert (
        page.index("## Serving throughput (CPU)") < page.index("## operator") < page.index("## Rollout cost")
    )
    assert "Not measured in this run: `bench/operator_scale.py` exited with 1" in page
    assert "![Rollout cost](img/rollout-gpus.png)" in page and "Note: n1" in page
    assert "2-core machine" in page and "Quick mode" not in page
    assert "Quick mode" in render_page(results, {}, quick=True)
