"""PatchCore training and in-process scoring: coreset bank, faiss search, few-shot update.

With `coarse_size` the detector is two-scale: a second PatchCore (`coarse`, sharing the
backbone) holds a bank of the whole image resized to coarse_size, and every path here
(fit, cross-fit, out-of-fold, few-shot update, leave-one-out) runs at both scales.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Self

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import (
    TILES_PER_BATCH,
    Detector,
    DetectorConfig,
    InferenceOutput,
    Prediction,
    batches,
)
from anomalyops.components.detectors.patchcore.sampler import greedy_coreset
from anomalyops.components.detectors.patchcore.search import (
    Exclusion,
    build_index,
    nearest_distance,
)
from anomalyops.components.detectors.patchcore.torch_model import PatchCoreModel
from anomalyops.components.detectors.tiling import ALIGN, resample, tile_grid
from anomalyops.components.training.folds import session_folds

# Images scored per search call in cross_fit: one call's patches spread over every thread.
CROSS_FIT_IMAGES = 16
# Below this many images the 1 % threshold is the single largest out-of-fold score (the
# conformal rank lies past n), and leaving a fold's rows out of the shared coreset leaves
# holes where only that fold's rows stood: transistor's top score rose 10 % (40.1 against
# 36.4 from five refits; detection at the threshold 60 % against 96 %). So below it each
# fold is scored by the coreset of the other folds' patches, as a refit would choose it
# (about K × 0.8 more coresets and indexes: seconds at these sizes); above, the shortcut.
REFIT_BELOW = 99


@dataclass
class PatchCoreConfig(DetectorConfig):
    strides: tuple[int, ...] = (8, 16)  # backbone stages whose features are stacked
    # 10 %, as the PatchCore paper and anomalib: validation AUROC rose on magnetic_tile
    # (+2.1 image, +0.7 pixel) and weld (+2.1 image) against 1 %, which existed only while
    # exact search over a larger bank was too slow (HNSW now answers in ~log(bank) steps).
    coreset_ratio: float = 0.1
    projection_dim: int = 64
    coreset_chunk: int | None = None  # first-stage patches per chunk (None: from the ratio)
    search: str = "auto"  # "exact", "hnsw", or "auto" (search.resolve says which)
    tile_size: tuple[int, int] | None = None  # None: the whole input_size is one tile
    tile_overlap: float = 0.25  # share of a tile its neighbours see too
    # (height, width): also score the whole image resized to it, smaller than input_size,
    # with a bank of its own (two scales, fused in torch_model.PatchCoreModel.fuse); a
    # tiled model's coarse scale is one tile. None: one scale.
    coarse_size: tuple[int, int] | None = None
    # Grey level each image's mean is scaled to before it is tiled and embedded, undoing a
    # lighting gain (PatchCoreModel.ungained; auto.py sets it for unclipped, evenly lit
    # sets). None: the grey levels as taken.
    gain_reference: float | None = None


class PatchCore(Detector):
    """Memory bank of good patch features; a patch far from every entry is anomalous.

    `update(images)` adds new good images to a fitted bank (a new variant, a few shots)
    without recomputing the old ones.
    """

    kind = "patchcore"
    config_class = PatchCoreConfig
    config: PatchCoreConfig
    model: PatchCoreModel

    def __init__(self, config: PatchCoreConfig | None = None, weights: str = "imagenet") -> None:
        super().__init__(config, weights)
        self._index: faiss.Index | None = None
        self._exclusion: Exclusion | None = None  # bank rows predict() may not answer with
        # The training image each bank row came from, while the detector that fit them
        # lives (not saved): out-of-fold scoring leaves a fold's own rows out.
        self.origin: np.ndarray | None = None
        self.coarse: PatchCore | None = None  # the whole image at coarse_size
        if self.config.coarse_size:
            self.coarse = PatchCore(self._coarse_config(), weights="none")
            self.coarse.model = self.model.coarse  # one module tree, one backbone

    def _coarse_config(self) -> PatchCoreConfig:
        config, size = self.config, self.config.coarse_size  # two ints (configure checks)
        fine = tuple(config.input_size)
        if (
            any(side < ALIGN or side % ALIGN for side in size)
            or not all(c <= f for c, f in zip(size, fine, strict=True))
            or tuple(size) == fine
        ):
            raise ValueError(f"coarse_size {tuple(size)!r}: needs two multiples of {ALIGN}, "
                             f"smaller than input_size {fine}")  # fmt: skip
        return dataclasses.replace(config, input_size=tuple(size), tile_size=None, coarse_size=None)

    def build_model(self, weights: str) -> PatchCoreModel:
        config = self.config
        backbone = Backbone(config.backbone, config.strides, weights, config.standardise)
        grid = tile_grid(config.input_size, config.tile_size, config.tile_overlap)
        coarse = None
        if config.coarse_size:
            coarse_grid = tile_grid(self._coarse_config().input_size, None)
            coarse = PatchCoreModel(backbone, coarse_grid, config.sigma, shares_backbone=True,
                                    gain_reference=config.gain_reference)  # fmt: skip
        return PatchCoreModel(backbone, grid, config.sigma, coarse,
                              gain_reference=config.gain_reference)  # fmt: skip

    def to(self, device: str | torch.device) -> Self:
        super().to(device)
        if self.coarse is not None:
            self.coarse.device = self.device  # its model moved with this one's
        return self

    def _coarse_images(self, images: np.ndarray) -> np.ndarray:
        return resample(torch.from_numpy(images), self.config.coarse_size).numpy()

    @torch.inference_mode()
    def _patches(self, images: np.ndarray, progress: bool) -> torch.Tensor:
        """Every tile's patch features, rows image by image."""
        self.check_images(images)
        chunks = []
        for batch in batches(images, self.batch_size, "extract features", progress, self.device):
            embedding = self.model.embed(batch, TILES_PER_BATCH)
            chunks.append(embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]))
        return torch.cat(chunks)

    def _select(self, patches: torch.Tensor, progress: bool) -> torch.Tensor:
        """Indices of the bank's patches among PATCHES (the coreset)."""
        config = self.config
        return greedy_coreset(
            patches,
            config.coreset_ratio,
            config.projection_dim,
            config.coreset_chunk,
            config.seed,
            progress,
        )

    def fit(self, images: np.ndarray, progress: bool = True) -> Self:
        if self.coarse is None:
            self._learn(self._patches(images, progress), len(images), progress)
        else:  # fusing the scales needs each one's out-of-fold scores
            self.cross_fit(images, session_folds(len(images)), progress)
        return self

    def _learn(self, patches: torch.Tensor, count: int, progress: bool) -> None:
        """The bank: the coreset of COUNT images' PATCHES, each row's image remembered."""
        keep = self._select(patches, progress)
        self._use_bank(patches[keep])
        self.origin = keep.cpu().numpy() // (len(patches) // count)

    @torch.inference_mode()
    def cross_fit(
        self, images: np.ndarray, folds: list[np.ndarray], progress: bool = True
    ) -> Prediction:
        """fit() and out_of_fold() with the patch features extracted once for both; at two
        scales each is cross-fit and its out-of-fold good scores set its share of fuse."""
        fine = self._cross_fit_bank(images, folds, progress)
        if self.coarse is None:
            return fine
        coarse = self.coarse.cross_fit(self._coarse_images(images), folds, progress)
        # Imported here: thresholds needs scipy, which a bare GPU machine lacks
        # (tests/test_gpu_check.py), and only a two-scale fit needs it.
        from anomalyops.components.training.thresholds import calibrate

        norm = []
        for scores in (fine.scores, coarse.scores):
            median = float(np.median(scores))
            span = calibrate(scores, 0.01).threshold - median
            norm += [median, span if span > 0 else max(float(np.std(scores)), 1e-6)]
        self.model.scale_norm.copy_(torch.tensor(norm))
        return self._fused(fine, coarse)

    def _fused(self, fine: Prediction, coarse: Prediction, chunk: int = 32) -> Prediction:
        """Two scales' predictions of the same images fused as the model fuses them."""
        scores, maps = [], []
        for start in range(0, len(fine.scores), chunk):
            part = slice(start, start + chunk)
            output = self.model.fuse(*(
                InferenceOutput(torch.from_numpy(p.maps[part])[:, None].to(self.device),
                                torch.from_numpy(p.scores[part]).to(self.device))
                for p in (fine, coarse)
            ))  # fmt: skip
            scores.append(output.score.cpu().numpy())
            maps.append(output.anomaly_map[:, 0].cpu().numpy())
        return Prediction(np.concatenate(scores), np.concatenate(maps))

    def _cross_fit_bank(
        self, images: np.ndarray, folds: list[np.ndarray], progress: bool
    ) -> Prediction:
        """This scale's cross_fit: its bank fit and its out-of-fold predictions."""
        patches = self._patches(images, progress)
        self._learn(patches, len(images), progress)
        per_image = patches.reshape(len(images), -1, patches.shape[1])
        refit = len(images) < REFIT_BELOW
        if self.device.type == "cpu" and not refit:
            self._built_index(progress)
        scores = np.empty(len(images), np.float32)
        maps = np.empty((len(images), *self.config.input_size), np.float32)
        bar = tqdm(total=len(images), desc="cross-fit", unit="img", disable=not progress)
        for fold in folds:
            others = per_image[np.setdiff1d(np.arange(len(images)), fold)] if refit else None
            with self._without_fold(fold, others):
                for rows in np.array_split(fold, math.ceil(len(fold) / CROSS_FIT_IMAGES)):
                    output = self._score(self._embedding(per_image[rows]))
                    scores[rows] = output.score.numpy()
                    maps[rows] = output.anomaly_map[:, 0].numpy()
                    bar.update(len(rows))
        bar.close()
        return Prediction(scores, maps)

    def out_of_fold(
        self,
        images: np.ndarray,
        folds: list[np.ndarray],
        progress: bool = True,
        scored: np.ndarray | None = None,
    ) -> Prediction:
        """Each fold scored by a bank of the other folds' images alone.

        Below REFIT_BELOW images that bank is the coreset of their patches, as a refit
        chooses it. Above, the coreset was chosen once over every image and fold k is
        searched only among the entries of other folds' images: patches only fold k had
        are gone from its bank, as they would be from a coreset of the other folds alone,
        at the cost of one filtered search per fold instead of K more coresets. Against K
        true refits that shortcut's 1 % thresholds were weld +1.4 %, transistor +10 % (its
        largest out-of-fold score, one image), bottle −2.7 %, with scores 0.7-2 % higher
        on average (tests/benchmarks/crossfit.py).
        """
        if self.origin is None or self.origin.max(initial=-1) >= len(images):
            raise RuntimeError("out_of_fold scores the images fit() just learnt; fit first")
        return super().out_of_fold(images, folds, progress, scored)

    def predict_out_of(
        self, images: np.ndarray, fold: np.ndarray, scored: np.ndarray
    ) -> Prediction:
        """SCORED scored by the bank of the images outside FOLD (_without_fold)."""
        rest = None
        if len(images) < REFIT_BELOW:
            rest = images[np.setdiff1d(np.arange(len(images)), fold)]
        with self._fold_left_out(fold, rest):
            return self.predict(scored)

    @contextlib.contextmanager
    def _fold_left_out(self, fold: np.ndarray, rest: np.ndarray | None) -> Iterator[None]:
        """Scoring inside the block, at every scale, sees only the images outside FOLD:
        REST, those images, where each fold's bank is a refit (REFIT_BELOW), else None."""
        others = None if rest is None else self._patches(rest, False)
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._without_fold(fold, others))
            if self.coarse is not None:
                coarse_rest = None if rest is None else self._coarse_images(rest)
                stack.enter_context(self.coarse._fold_left_out(fold, coarse_rest))
            yield

    def bank_sizes(self) -> tuple[int, ...]:
        """Rows of each scale's bank, the fine one first."""
        coarse = self.coarse.bank_sizes() if self.coarse is not None else ()
        return (len(self.model.memory_bank), *coarse)

    def predict_without(self, images: np.ndarray, excluded: Sequence[np.ndarray]) -> Prediction:
        """IMAGES scored by the banks without their EXCLUDED rows (a boolean mask per bank,
        as bank_sizes orders them): what banks that never held their patches say, for
        thresholds set on images they learnt."""
        with self._excluding(excluded):
            return self.predict(images)

    @contextlib.contextmanager
    def _excluding(self, excluded: Sequence[np.ndarray]) -> Iterator[None]:
        if len(excluded) != len(self.bank_sizes()):
            raise ValueError(f"{len(excluded)} row masks for {len(self.bank_sizes())} banks")
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._searching_without(excluded[0]))
            if self.coarse is not None:
                stack.enter_context(self.coarse._excluding(excluded[1:]))
            yield

    @contextlib.contextmanager
    def _without_fold(self, fold: np.ndarray, others: torch.Tensor | None) -> Iterator[None]:
        """Scoring inside the block sees only the images outside FOLD: the coreset of
        OTHERS (their patches, as a refit chooses it), or with OTHERS None the shared bank
        less FOLD's rows."""
        if others is None:
            with self._searching_without(np.isin(self.origin, fold)):
                yield
            return
        own = others.reshape(-1, others.shape[-1])
        saved = self.model.memory_bank, self._index
        self.model.memory_bank, self._index = own[self._select(own, False)].contiguous(), None
        try:
            yield
        finally:
            self.model.memory_bank, self._index = saved

    @contextlib.contextmanager
    def _searching_without(self, excluded: np.ndarray) -> Iterator[None]:
        """Searches inside the block never answer with the EXCLUDED bank rows."""
        self._exclusion = Exclusion(excluded)
        try:
            yield
        finally:
            self._exclusion = None

    def _use_bank(self, bank: torch.Tensor) -> None:
        self.model.memory_bank = bank.contiguous()
        self._index = None
        self.fitted = True

    def update(self, images: np.ndarray, progress: bool = True) -> Self:
        """Add a few new good images to the bank, subsampled at the same coreset ratio."""
        if not self.fitted:
            return self.fit(images, progress)
        patches = self._patches(images, progress)
        new = patches[self._select(patches, progress)]
        self.model.memory_bank = torch.cat([self.model.memory_bank, new])
        self._index = None
        self.origin = None  # the new rows come from images fit() never saw
        if self.coarse is not None:
            self.coarse.config = self._coarse_config()  # a ratio set since (few-shot)
            self.coarse.update(self._coarse_images(images), progress)
        return self

    @property
    def index(self) -> faiss.Index:
        """faiss index over the whole bank (config.search; built on first use)."""
        return self._built_index(progress=False)

    def _built_index(self, progress: bool) -> faiss.Index:
        if self._index is None:
            bank = self.model.memory_bank.numpy()
            self._index = build_index(bank, self.config.search, progress)
        return self._index

    def infer(self, batch: torch.Tensor) -> InferenceOutput:
        output = self._score(self.model.embed(batch, TILES_PER_BATCH))
        if self.coarse is None:
            return output
        coarse = self.coarse.infer(resample(batch, self.config.coarse_size))
        return self.model.fuse(output, coarse)

    @classmethod
    def restore(cls, description: dict, state: dict[str, torch.Tensor]) -> Self:
        detector = super().restore(description, state)
        if detector.coarse is not None:
            detector.coarse.fitted = True  # its bank came in with the fine model's state
        return detector

    def _embedding(self, patches: torch.Tensor) -> torch.Tensor:
        """Images' patch rows (n × patches × D, as _patches gives them) → (n·T)×D×h×w."""
        height, width = (side // self.model.backbone.strides[0] for side in self.model.grid.tile)
        tiles = patches.reshape(-1, height, width, patches.shape[-1])
        return tiles.permute(0, 3, 1, 2)

    def _score(self, embedding: torch.Tensor) -> InferenceOutput:
        """Tile embeddings → map and score, searching the bank outside self._exclusion."""
        if self.device.type != "cpu":
            # On a GPU exact search is a few matrix products: the exported graph's own.
            bank = self.model.memory_bank
            if self._exclusion is not None:
                bank = bank[torch.from_numpy(self._exclusion.kept).to(bank.device)]
            return self.model.outputs(self.model.nearest_distances(embedding, bank))
        n, d, h, w = embedding.shape
        patches = embedding.permute(0, 2, 3, 1).reshape(-1, d).numpy()
        distances = nearest_distance(self.index, patches, groups=n, exclusion=self._exclusion)
        return self.model.outputs(torch.from_numpy(distances).reshape(n, 1, h, w))
