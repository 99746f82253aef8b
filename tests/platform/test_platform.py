"""platform/: the install guide pins every version and names every values file it ships."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

PLATFORM = Path(__file__).resolve().parents[2] / "platform"
GUIDE = (PLATFORM / "README.md").read_text()


def test_values_files_parse_and_the_guide_uses_each():
    files = sorted((PLATFORM / "values").glob("*.yaml")) + sorted(
        (PLATFORM / "knative").glob("*.yaml")
    )
    assert len(files) >= 7
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path.name
        where = f"platform/{path.parent.name}/{path.name}"
        assert where in GUIDE, f"{where} is not in the guide"


def test_kserve_comes_from_its_pinned_release_charts_not_config_default():
    """config/default has no inferenceservice-config and a :latest controller image."""
    assert "config/default" not in GUIDE.split("## Install", 1)[1]
    for chart in ("kserve-crd", "kserve-resources"):
        assert f"oci://ghcr.io/kserve/charts/{chart} --version v0.20.0" in GUIDE


def test_every_install_is_pinned():
    commands = re.sub(r"\\\n\s*", " ", GUIDE.split("## Install", 1)[1].split("## ", 1)[0])
    helm_installs = [line for line in commands.splitlines() if "helm install" in line]
    assert len(helm_installs) == 7
    for line in helm_installs:
        if "charts/anomalyops" not in line:
            assert re.search(r"--version v?\d+\.\d+\.\d+", line), line
    for line in commands.splitlines():
        if "kubectl apply -k" in line or "kubectl apply --server-side -k" in line:
            assert "?ref=" in line, line
    assert "latest" not in commands


def test_platform_is_not_a_python_package():
    assert not (PLATFORM / "__init__.py").exists()  # would shadow the stdlib's `platform`
