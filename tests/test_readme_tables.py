"""The README's benchmark tables are the results files' tables, written by
tests/benchmarks/detectors.py: no number in them is typed by hand."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_tables_are_the_results_files():
    spec = importlib.util.spec_from_file_location(
        "detectors_benchmark", REPO / "tests" / "benchmarks" / "detectors.py"
    )
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    readme = (REPO / "README.md").read_text()
    results = REPO / "tests" / "benchmarks" / "results"
    assert benchmark.readme_with_tables(readme, results) == readme, (
        "run python tests/benchmarks/detectors.py --tables-only"
    )
