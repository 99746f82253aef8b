"""platform/README.md's capacity note is what tests/benchmarks/capacity.py derives from the
results files and the chart's requests today: no number in it is typed by hand."""

from benchmark_script import REPO, load_benchmark


def test_capacity_note_is_derived_from_the_results_files():
    capacity = load_benchmark("capacity")
    readme = (REPO / "platform" / "README.md").read_text()
    assert capacity.section() in readme, "run tests/benchmarks/capacity.py"
