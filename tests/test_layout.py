"""The tree shows the architecture: no import circle, serving apart from training, small
modules, one folder per concept. Read from the source with `ast`, imports inside
functions included (the CLI's circle ran through those)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"components": "anomalyops.components", "serving": "anomalyops.serving",
         "pipelines": "anomalyops.pipelines"}  # fmt: skip
MAX_LINES = 450
# Shared helpers allowed at the root of components/: everything else lives in a concept folder.
LOOSE_COMPONENTS = {"__init__.py", "hashing.py", "json_files.py"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules PATH imports (a `from package import module` names the module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    for name in graph:  # a package's __init__ is imported on the way: not a dependency edge
        graph[name] = {dep for dep in graph[name] if not name.startswith(f"{dep}.")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_serving_imports_nothing_from_training_or_pipelines():
    leaks = {
        name: sorted(dep for dep in deps if not dep.startswith("anomalyops.serving"))
        for name, deps in _graph().items()
        if name.startswith("anomalyops.serving")
    }
    assert {name: deps for name, deps in leaks.items() if deps} == {}


@pytest.mark.parametrize("folder", sorted(ROOTS))
def test_no_product_module_over_the_limit(folder):
    long = {str(p.relative_to(REPO)): n for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert long == {}


def test_components_keep_their_concepts_in_folders():
    loose = {p.name for p in (REPO / "components").glob("*.py")}
    assert loose <= LOOSE_COMPONENTS, sorted(loose - LOOSE_COMPONENTS)
    for concept in ("data", "detectors", "training", "evaluation", "reports", "registry",
                    "deploy", "drift", "steps"):  # fmt: skip
        assert (REPO / "components" / concept / "__init__.py").is_file(), concept
    for concept in ("images", "contract", "triton", "predictions", "transformer"):
        assert (REPO / "serving" / concept / "__init__.py").is_file(), concept
    for concept in ("runner", "cli"):
        assert (REPO / "pipelines" / concept / "__init__.py").is_file(), concept


def test_the_python_backend_uses_the_contract_tensor_names():
    """It runs inside Triton without our package, so it spells the names; they must match."""
    from anomalyops.serving.contract.model import INPUT_NAME, MAP_OUTPUT, SCORE_OUTPUT

    source = (REPO / "serving" / "triton" / "python_backend.py").read_text()
    spelled = set(re.findall(r'"(image|anomaly_map|score)"', source))
    assert spelled == {INPUT_NAME, MAP_OUTPUT, SCORE_OUTPUT}


def test_test_files_have_unique_names():
    """pytest imports test modules by basename (no __init__.py here): a repeat stops the run."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
