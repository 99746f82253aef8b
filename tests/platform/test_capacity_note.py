"""platform/README.md's capacity note is what tests/benchmarks/capacity.py derives from the
results files and the chart's requests today: no number in it is typed by hand."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_capacity_note_is_derived_from_the_results_files():
    spec = importlib.util.spec_from_file_location(
        "capacity", REPO / "tests" / "benchmarks" / "capacity.py"
    )
    capacity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capacity)
    readme = (REPO / "platform" / "README.md").read_text()
    assert capacity.section() in readme, "run tests/benchmarks/capacity.py"
