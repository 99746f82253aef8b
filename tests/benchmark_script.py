"""A benchmark script under tests/benchmarks/ loaded as a module, for tests that check
what it derives (README tables, the capacity note) without running it."""

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str) -> ModuleType:
    """tests/benchmarks/NAME.py as a module (the folder is no package)."""
    spec = importlib.util.spec_from_file_location(
        name, REPO / "tests" / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
