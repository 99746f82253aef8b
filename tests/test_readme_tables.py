"""The README's benchmark tables are the results files' tables, written by
tests/benchmarks/detectors.py and fit_scaling.py: no number in them is typed by hand."""

from benchmark_script import REPO, load_benchmark


def test_readme_tables_are_the_results_files():
    benchmark = load_benchmark("detectors")
    readme = (REPO / "README.md").read_text()
    results = REPO / "tests" / "benchmarks" / "results"
    assert benchmark.readme_with_tables(readme, results) == readme, (
        "run python tests/benchmarks/detectors.py --tables-only"
    )
