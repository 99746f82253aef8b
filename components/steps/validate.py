"""Validate step: good-image checks (see anomalyops.components.data.validate) as a component."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from pathlib import Path

from kfp.dsl import HTML, Artifact, Dataset, Output

from anomalyops.components.data.validate import ValidationReport, validate
from anomalyops.components.steps import component


def validate_step(
    data: str,
    manifest_path: str,
    report_path: str,
    min_images: int = 10,
    require_uniform_size: bool = False,
) -> ValidationReport:
    """Validate DATA; write the JSON manifest and the HTML report where KFP wants them.

    Reports are written before a hard failure is raised, so a failed run still shows why.
    """
    workdir = Path(manifest_path).parent / "validation"
    try:
        report = validate(data, workdir, min_images, require_uniform_size)
    finally:
        for source, target in (
            ("validation.json", manifest_path),
            ("validation.html", report_path),
        ):
            if (workdir / source).is_file():
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                Path(target).write_bytes((workdir / source).read_bytes())
    return report


@component
def validate_component(
    data: str,
    min_images: int,
    require_uniform_size: bool,
    dataset: Output[Dataset],
    manifest: Output[Artifact],
    report: Output[HTML],
):
    """Copy DATA (bucket URI or path; MVTec layout, or a flat folder of good images) into
    the Dataset artifact, then check its good images.

    Later steps read the images from that artifact, never from a path on one machine.
    """
    from anomalyops.components.data.datasets import arrange_flat
    from anomalyops.components.steps.validate import validate_step
    from anomalyops.serving.storage import download

    download(data, dataset.path)
    if arrange_flat(dataset.path):  # k new good parts in one folder: they are train/good
        print(f"validate: {data} holds images, no train/good: taken as train/good")
    result = validate_step(
        dataset.path, manifest.path, report.path, min_images, require_uniform_size
    )
    dataset.metadata.update(
        {
            "source": data,
            "sha256": result.dataset_sha256,
            "images": result.images,
            "warnings": [f.check for f in result.warnings],
        }
    )
