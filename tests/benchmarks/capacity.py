"""platform/README.md's capacity note, derived from the results files (never typed by hand).

Reads tests/benchmarks/results/serving.json (served throughput and latency),
detectors-*.json (in-process ms/img of every detector row) and the chart's default
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
        "| path | batch | clients | images/s | p50 ms | p99 ms | measured |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for path, block in serving["paths"].items():
        for run in block["runs"]:
            cells = (path, run["batch"], run["clients"], f"{run['images_per_s']:.1f}",
                     f"{run['p50_ms']:.1f}", f"{run['p99_ms']:.1f}", block["measured"])  # fmt: skip
            lines.append("| " + " | ".join(map(str, cells)) + " |")
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
        f"the {cores}-core rows above divided by {cores}); a bigger bank costs in proportion to "
        "its ms/img in the second table.",
        f"- **Lines per CPU node** ({NODE['cores']} cores, {NODE['memory_gib']} GiB) with the "
        f"chart's default requests (Triton {triton['cpu']} CPU / {triton['memory']}, transformer "
        f"{transformer['cpu']} CPU / {transformer['memory']}): {min(by_cpu, by_memory)} lines "
        f"(CPU allows {by_cpu}, memory {by_memory}).",
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
