"""PatchCore's pure torch model: what gets exported (Roth et al., CVPR 2022).

A two-scale model also scores the whole image at a smaller size with a bank of its own
(`coarse`) and fuses the two: each scale's map and score in units of its own
out-of-fold 1 % threshold above its median, the larger kept. A patch-level model at the
fine scale sees small defects a 256² view blurs away, the coarse one keeps the layout a
fine view is too local for (transistor's misplaced parts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalyops.components.detectors.anomaly_map import AnomalyMap
from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import InferenceOutput
from anomalyops.components.detectors.tiling import TileGrid, crop, resample, stitch

# Bank entries per distance block in the exported graph: the graph never holds more than
# patches × SCORE_CHUNK distances per image, whatever the bank size.
SCORE_CHUNK = 2048
# What one image's distance blocks may take (three live patches × SCORE_CHUNK float32
# matrices: product, sum, and the block being reduced); Triton's max batch follows.
BATCH_SCRATCH_BYTES = 1 << 30
MAX_BATCH = 32


class PatchCoreModel(nn.Module):
    """Locally aware patch features, nearest-neighbour distance to a memory bank."""

    def __init__(
        self,
        backbone: Backbone,
        grid: TileGrid,
        sigma: float,
        coarse: PatchCoreModel | None = None,
        shares_backbone: bool = False,
        gain_reference: float | None = None,
    ) -> None:
        super().__init__()
        if gain_reference is not None and not 0 < gain_reference <= 255:  # NaN fails too
            raise ValueError(f"gain_reference must be a grey level in (0, 255], "
                             f"got {gain_reference}")  # fmt: skip
        self.gain_reference = gain_reference
        if shares_backbone:  # a coarse scale's: the fine model's backbone, kept outside
            object.__setattr__(self, "backbone", backbone)  # this tree: saved/exported once
        else:
            self.backbone = backbone
        self.grid = grid
        self.anomaly_map = AnomalyMap(grid.image, sigma)
        self.feature_dim = sum(backbone.channels)
        self.register_buffer("memory_bank", torch.zeros(0, self.feature_dim))
        self.coarse = coarse
        if coarse is not None:  # (fine median, fine span, coarse median, coarse span): fuse
            self.register_buffer("scale_norm", torch.tensor([0.0, 1.0, 0.0, 1.0]))

    def embed(self, images: torch.Tensor, tiles_per_pass: int | None = None) -> torch.Tensor:
        """uint8 N×H×W×3 → (N·T)×D×h×w per tile: 3×3-neighbourhood averages, stacked.

        In process the backbone may take `tiles_per_pass` tiles at a time (CPU caches);
        the exported graph takes them all at once.
        """
        tiles = crop(self.ungained(images), self.grid)
        chunks = tiles.split(tiles_per_pass) if tiles_per_pass else (tiles,)
        return torch.cat([self._tile_features(chunk) for chunk in chunks])

    def ungained(self, images: torch.Tensor) -> torch.Tensor:
        """Each whole image (N×H×W×3) scaled so its mean grey level is gain_reference, as
        float; as it is without one. A part lit 10 % brighter then looks as it did, where
        the sensor is linear (auto.py): before tiling, so tiles keep their contrasts."""
        if self.gain_reference is None:
            return images
        pixels = images.float()
        return pixels * (self.gain_reference / (pixels.mean(dim=(1, 2, 3), keepdim=True) + 1.0))

    def _tile_features(self, tiles: torch.Tensor) -> torch.Tensor:
        features = [F.avg_pool2d(f, 3, stride=1, padding=1) for f in self.backbone(tiles)]
        size = features[0].shape[-2:]
        features = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
        ]
        return torch.cat(features, dim=1)

    def outputs(self, patch_scores: torch.Tensor) -> InferenceOutput:
        """(N·T)×1×h×w tile patch distances → anomaly map and image score (the maximum)."""
        stitched = stitch(patch_scores, self.grid, self.backbone.strides[0])
        return InferenceOutput(self.anomaly_map(stitched), stitched.amax(dim=(1, 2, 3)))

    def fuse(self, fine: InferenceOutput, coarse: InferenceOutput) -> InferenceOutput:
        """Both scales' outputs in units of their own threshold span, the larger kept.

        Each is (x - median) / (1 % threshold - median) over its out-of-fold good scores
        (PatchCore.cross_fit), so 1 means "at that scale's own threshold" and neither
        scale's larger distances drown the other; the fused threshold is then calibrated
        again on the fused out-of-fold scores. The coarse map is upsampled to the fine one.
        """
        norm = self.scale_norm
        fine_median, fine_span, coarse_median, coarse_span = norm[0], norm[1], norm[2], norm[3]
        size = fine.anomaly_map.shape[-2:]
        coarse_map = F.interpolate(coarse.anomaly_map, size=size, mode="bilinear",
                                   align_corners=False)  # fmt: skip
        return InferenceOutput(
            torch.maximum((fine.anomaly_map - fine_median) / fine_span,
                          (coarse_map - coarse_median) / coarse_span),
            torch.maximum((fine.score - fine_median) / fine_span,
                          (coarse.score - coarse_median) / coarse_span),
        )  # fmt: skip

    def patches_per_image(self) -> int:
        height, width = self.grid.tile
        stride = self.backbone.strides[0]
        return self.grid.count * (height // stride) * (width // stride)

    def scratch_bytes_per_image(self) -> int:
        """Peak bytes of the exported graph's distance blocks for one image (the larger
        scale's: the two run one after the other)."""
        own = 3 * self.patches_per_image() * min(SCORE_CHUNK, len(self.memory_bank)) * 4
        return max(own, self.coarse.scratch_bytes_per_image() if self.coarse else 0)

    def max_batch_size(self) -> int:
        """Images per batch whose distance blocks fit in BATCH_SCRATCH_BYTES (1 to 32)."""
        return max(1, min(MAX_BATCH, BATCH_SCRATCH_BYTES // self.scratch_bytes_per_image()))

    def nearest_distances(self, embedding: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """(N·T)×D×h×w features → (N·T)×1×h×w distances to the nearest BANK row.

        Exact, as blocked matrix products with a running minimum: any ONNX backend runs
        it in memory bounded by SCORE_CHUNK, and on a GPU it is PatchCore's search."""
        n, d, h, w = embedding.shape
        patches = embedding.permute(0, 2, 3, 1).reshape(n, h * w, d)
        norms = (patches * patches).sum(-1, keepdim=True)
        nearest = None
        for block in bank.split(SCORE_CHUNK):
            squared = norms - 2 * patches @ block.T + (block * block).sum(-1)
            closest = squared.amin(-1)
            nearest = closest if nearest is None else torch.minimum(nearest, closest)
        return nearest.clamp_min(0).sqrt().reshape(n, 1, h, w)

    def forward(self, images: torch.Tensor) -> InferenceOutput:
        output = self.outputs(self.nearest_distances(self.embed(images), self.memory_bank))
        if self.coarse is None:
            return output
        return self.fuse(output, self.coarse(resample(images, self.coarse.grid.image)))
