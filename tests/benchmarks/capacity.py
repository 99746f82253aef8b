"""platform/README.md's capacity note, derived from the results files (never typed by hand).

Reads tests/benchmarks/results/serving.json (served throughput and latency),
serving-<dataset>.json (tiled and large-bank lines), multi-model.json (many models in one
Triton), detectors-*.json (in-process ms/img of every detector row) and the chart's default
resource requests (charts/anomalyops/values.yaml), and rewrites the section between the
capacity markers in platform/README.md. Run it after either benchmark:

    .venv/bin/python tests/benchmarks/capacity.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "benchmarks" / "results"
TARGET = ROOT / "platform" / "README.md"
BEGIN, END = "<!-- capacity: begin (tests/benchmarks/capacity.py) -->", "<!-- capacity: end -->"
NODE = {"cores": 16, "memory_gib": 64}  # the example CPU node of "Node pools"


def _cpu(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _gib(value: str) -> float:
    units = {"Mi": 1 / 1024, "Gi": 1.0}
    return float(value[:-2]) * units[value[-2:]]


def _run_rows(block: dict, *first: object) -> list[str]:
    """Table rows of one serving path's runs, each led by FIRST's cells."""
    rows = []
    for run in block["runs"]:
        cells = (*first, run["batch"], run["clients"], f"{run['images_per_s']:.1f}",
                 f"{run['p50_ms']:.1f}", f"{run.get('p95_ms', 0):.1f}", f"{run['p99_ms']:.1f}",
                 f"{run.get('load_average_1m', '-')}", block["measured"])  # fmt: skip
        rows.append("| " + " | ".join(map(str, cells)) + " |")
    return rows


def large_models() -> list[str]:
    """Tiled and large-bank lines (results/serving-<dataset>.json), when measured."""
    files = sorted(RESULTS.glob("serving-*.json"))
    if not files:
        return []
    lines = ["", "Tiled and large-bank lines at the shipped defaults, through the real Triton "
             "(`serving.py --dataset`; results/serving-<dataset>.json):", "",
             "| dataset | model | path | batch | clients | images/s | p50 ms | p95 ms | p99 ms "
             "| load | measured |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for path in files:
        result = json.loads(path.read_text())
        dataset = path.stem.removeprefix("serving-")
        model = result["model"].split(f", {dataset}")[0]
        for name, block in result["paths"].items():
            lines += _run_rows(block, dataset, model, name)
    return lines


def many_models() -> list[str]:
    """N variants in one Triton (results/multi-model.json), when measured."""
    path = RESULTS / "multi-model.json"
    if not path.is_file():
        return []
    result = json.loads(path.read_text())
    lines = ["", f"Many lines in one Triton (`tests/benchmarks/multi_model.py`, {result['model']}, "
             f"{result['measured']}, commit {result['commit']}; results/multi-model.json): "
             "requests spread over all models, batch 1:", "",
             "| models | load s | RSS MiB | MiB per model | images/s | p50 ms | p99 ms | load |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for run in result["runs"]:
        cells = (run["models"], run["load_s"], f"{run['rss_mib']:.0f}",
                 f"{run['rss_per_model_mib']:.0f}", f"{run['images_per_s']:.1f}",
                 f"{run['p50_ms']:.1f}", f"{run['p99_ms']:.1f}",
                 run["load_average_1m"])  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if result.get("marginal_rss_per_model_mib") is not None:
        lines += ["", f"Each extra model costs about {result['marginal_rss_per_model_mib']:.0f} "
                  "MiB of resident memory (the slope between the smallest and largest count): "
                  "a python-flavour model is a backend stub process with its own onnxruntime "
                  "session and bank."]  # fmt: skip
    return lines


def _bank_cost(cores: int) -> str:
    """How larger banks and tiles scale the served rate (batch 1 through Triton)."""
    rates = []
    for path in sorted(RESULTS.glob("serving-*.json")):
        runs = json.loads(path.read_text())["paths"].get("triton", {}).get("runs", [])
        best = max((r["images_per_s"] for r in runs if r["batch"] == 1), default=None)
        if best is not None:
            rates.append(f"{path.stem.removeprefix('serving-')} {best / cores:.1f}")
    if not rates:
        return ""
    return (
        "; the served graph searches the bank exactly, so larger banks and tiles cost "
        f"more per core: {', '.join(rates)} images/s (the tiled and large-bank table)"
    )


def _memory_per_line() -> list[str]:
    path = RESULTS / "multi-model.json"
    marginal = json.loads(path.read_text()).get("marginal_rss_per_model_mib") if (
        path.is_file()) else None  # fmt: skip
    if marginal is None:
        return []
    return [f"- **Memory per line in one shared Triton**: about {marginal:.0f} MiB resident "
            "per extra model of weld's size (the many-lines table), so a Triton serving 20 "
            f"such lines needs about {20 * marginal / 1024:.1f} GiB."]  # fmt: skip


def section() -> str:
    serving = json.loads((RESULTS / "serving.json").read_text())
    values = yaml.safe_load((ROOT / "charts" / "anomalyops" / "values.yaml").read_text())
    defaults = values["lineDefaults"]
    triton, transformer = (
        defaults["resources"]["requests"],
        defaults["transformer"]["resources"]["requests"],
    )
    cores = int(re.search(r"(\d+) CPUs", serving["machine"]).group(1))
    lines = [
        BEGIN,
        f"Measured by `tests/benchmarks/serving.py` ({serving['model']}; {serving['machine']}; "
        "results/serving.json):",
        "",
        "| path | batch | clients | images/s | p50 ms | p95 ms | p99 ms | load | measured |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for path, block in serving["paths"].items():
        lines += _run_rows(block, path)
    lines += large_models() + many_models()
    lines += ["", "In-process prediction (`anomalyops predict`'s path; "
              "results/detectors-*.json):", "", "| dataset | detector | variant | bank | ms/img |",
              "|---|---|---|---:|---:|"]  # fmt: skip
    for path in sorted(RESULTS.glob("detectors-*.json")):
        for row in json.loads(path.read_text())["rows"]:
            lines.append(f"| {row['dataset']} | {row.get('detector', 'patchcore')} | "
                         f"{row['variant']} | {row.get('bank', '-')} "
                         f"| {row['ms_per_image']:.0f} |")  # fmt: skip
    best = {path: max(r["images_per_s"] for r in block["runs"] if r["batch"] == 1)
            for path, block in serving["paths"].items()}  # fmt: skip
    line_cpu = _cpu(triton["cpu"]) + _cpu(transformer["cpu"])
    line_mem = _gib(triton["memory"]) + _gib(transformer["memory"])
    by_cpu, by_memory = int(NODE["cores"] // line_cpu), int(NODE["memory_gib"] // line_mem)
    lines += [
        "",
        "Derived from those rows (assumes throughput scales with cores; not measured on a "
        "cluster):",
        f"- **Per CPU core**: about {best.get('transformer', 0) / cores:.0f} images/s through "
        f"the transformer and {best.get('triton', 0) / cores:.0f} with raw tensors (batch 1, "
        f"the {cores}-core rows above divided by {cores})" + _bank_cost(cores) + ".",
        f"- **Lines per CPU node** ({NODE['cores']} cores, {NODE['memory_gib']} GiB) with the "
        f"chart's default requests (Triton {triton['cpu']} CPU / {triton['memory']}, transformer "
        f"{transformer['cpu']} CPU / {transformer['memory']}): {min(by_cpu, by_memory)} lines "
        f"(CPU allows {by_cpu}, memory {by_memory}).",
        *_memory_per_line(),
        "- **Per GPU**: untested, no GPU was available to this work; measure with "
        "`tests/benchmarks/serving.py` on a GPU line before sizing the GPU pool (the chart "
        "requests one GPU per Triton pod).",
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = TARGET.read_text()
    if BEGIN in text:
        start, stop = text.index(BEGIN), text.index(END) + len(END) + 1
        text = text[:start] + section() + text[stop:]
    else:  # first run: the hand-written note after "## Capacity" is replaced
        head = text.index("## Capacity")
        rest = text.find("\n## ", head + 1)
        tail = text[rest + 1 :] if rest != -1 else ""
        text = text[:head] + "## Capacity\n\n" + section() + ("\n" + tail if tail else "")
    TARGET.write_text(text)
    print(f"capacity note rewritten in {TARGET}")


if __name__ == "__main__":
    main()
