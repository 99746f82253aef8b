"""STPM's pure torch model: what gets exported (Wang et al., "Student-Teacher Feature
Pyramid Matching for Anomaly Detection", BMVC 2021).

A frozen pretrained teacher and a student of the same architecture trained from scratch
to reproduce the teacher's feature pyramid on good images only. Where the student has
never seen such content (a defect), its features part from the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalyops.components.detectors.anomaly_map import AnomalyMap
from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import InferenceOutput

COMBINES = ("product", "sum")


def normalise(features: torch.Tensor) -> torch.Tensor:
    """Unit length along channels: the distance then compares directions, not scales
    (the teacher's layers differ in magnitude by an order)."""
    return F.normalize(features, dim=1)


def distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """N×C×h×w unit-length features → N×1×h×w: ½‖t − s‖² per position (0 to 2)."""
    return 0.5 * (teacher - student).square().sum(1, keepdim=True)


class STPMModel(nn.Module):
    """Teacher and student pyramids; per-scale distances combined into one map."""

    def __init__(
        self,
        teacher: Backbone,
        student: Backbone,
        input_size: tuple[int, int],
        sigma: float,
        combine: str,
    ) -> None:
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        if teacher.strides != student.strides:
            raise ValueError("teacher and student must end at the same strides")
        self.backbone = teacher
        self.student = student
        self.combine = combine
        self.anomaly_map = AnomalyMap(input_size, sigma)

    def student_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [normalise(f) for f in self.student(images)]

    def teacher_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [normalise(f) for f in self.backbone(images)]

    def patch_scores(
        self, teacher: list[torch.Tensor], student: list[torch.Tensor]
    ) -> torch.Tensor:
        """Per-scale distances at the finest scale's size, multiplied or summed."""
        size = teacher[0].shape[-2:]
        combined = None
        for t, s in zip(teacher, student, strict=True):
            d = F.interpolate(distance(t, s), size=size, mode="bilinear", align_corners=False)
            if combined is None:
                combined = d
            elif self.combine == "product":
                combined = combined * d
            else:
                combined = combined + d
        return combined

    def forward(self, images: torch.Tensor) -> InferenceOutput:
        scores = self.patch_scores(self.teacher_features(images), self.student_features(images))
        anomaly_map = self.anomaly_map(scores)
        return InferenceOutput(anomaly_map, anomaly_map.amax(dim=(1, 2, 3)))
