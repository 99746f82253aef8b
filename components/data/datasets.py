"""Good-image datasets in the MVTec AD folder layout, with optional pixel masks.

    ROOT/train/good/*.{png,jpg,bmp,tif,...}
    ROOT/test/good/*, ROOT/test/<defect>/*
    ROOT/ground_truth/<defect>/<stem>_mask.*   (optional)

Images and masks may be PNG, JPEG, BMP, TIFF or WebP, 8 or 16 bit (serving/images/decode.py
decodes them the way serving does). Masks are paired with images by file stem, never by
position in sorted lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from anomalyops.components.hashing import files_sha256
from anomalyops.serving.images.decode import (
    ImageDecodeError,
    content_box,
    decode_image,
    resize,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG blurs a 0/255 mask
OnError = Literal["raise", "skip"]


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message names the file or folder."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 good, 1 defective
    defect_type: str  # "good" or the test/<defect> folder name
    mask_path: Path | None  # pixel label; None where there is none


@dataclass
class Split:
    """Decoded images (N×H×W×3 uint8) with labels and, where known, masks (N×H×W bool)."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None  # all images' masks, or None when the split has no pixel labels
    samples: list[Sample]
    skipped: list[str]  # "path: reason" of images left out
    # Each image's box in the input (decode.content_box) where aspects are kept, else None
    boxes: list[tuple[slice, slice]] | None = None

    @property
    def paths(self) -> list[str]:
        return [str(s.path) for s in self.samples]

    @property
    def content(self) -> np.ndarray | None:
        """N×H×W bool: the input pixels each image fills (None: all of them)."""
        if self.boxes is None:
            return None
        filled = np.zeros(self.images.shape[:3], dtype=bool)
        for image, box in zip(filled, self.boxes, strict=True):
            image[box] = True
        return filled

    def own_pixels(self) -> list[np.ndarray]:
        """Each image cut to its own box: what a frame check measures, never a border."""
        if self.boxes is None:
            return list(self.images)
        return [image[box] for image, box in zip(self.images, self.boxes, strict=True)]

    @property
    def pixel_labelled(self) -> np.ndarray:
        """Which images have a true mask: good ones, and defective ones with a mask file."""
        return np.asarray([s.label == 0 or s.mask_path is not None for s in self.samples])


def _images_in(folder: Path) -> list[Path]:
    """Every entry named like an image, files or not: a folder called x.png, a FIFO or a
    broken link is reported (skipped or refused, as `on_error` says) when decoded, never
    dropped without a word."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def arrange_flat(folder: str | Path) -> bool:
    """Give a flat folder of images (what a line drops its k new good parts into) the MVTec
    layout in place: with no train/good, its top-level images move there. True if moved."""
    folder = Path(folder)
    if (folder / "train" / "good").is_dir():
        return False
    images = _images_in(folder) if folder.is_dir() else []
    if not images:
        return False
    good = folder / "train" / "good"
    good.mkdir(parents=True)
    for image in images:
        image.rename(good / image.name)
    return True


class FolderDataset:
    """One product variant's images, read from an MVTec-AD-style folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not (self.root / "train" / "good").is_dir():
            raise DatasetError(f"{self.root}: no train/good folder (expected MVTec AD layout)")

    @property
    def has_pixel_labels(self) -> bool:
        return (self.root / "ground_truth").is_dir()

    def train_samples(self) -> list[Sample]:
        samples = [Sample(p, 0, "good", None) for p in _images_in(self.root / "train" / "good")]
        if not samples:
            raise DatasetError(f"{self.root / 'train' / 'good'}: no images")
        return samples

    def test_samples(self) -> list[Sample]:
        test = self.root / "test"
        if not test.is_dir():
            return []
        samples = []
        for folder in sorted(p for p in test.iterdir() if p.is_dir()):
            for path in _images_in(folder):
                samples.append(self._test_sample(folder.name, path))
        return samples

    def _test_sample(self, defect_type: str, path: Path) -> Sample:
        if defect_type == "good":
            return Sample(path, 0, "good", None)
        folder = self.root / "ground_truth" / defect_type
        found = [folder / f"{path.stem}_mask{suffix}" for suffix in MASK_SUFFIXES]
        mask = next((m for m in found if m.is_file()), None)
        if self.has_pixel_labels and mask is None:
            log.warning("%s: no mask at %s; left out of pixel metrics", path, found[0])
        return Sample(path, 1, defect_type, mask)

    def content_hash(self, folders: tuple[str, ...] = ("train", "test", "ground_truth")) -> str:
        """sha256 over the images (paths and bytes) under `folders`: the data's identity."""
        paths = [
            path
            for folder in folders
            if (self.root / folder).is_dir()
            for path in sorted((self.root / folder).rglob("*"))
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        ]
        return files_sha256(self.root, paths)

    def load_train(
        self,
        size: tuple[int, int],
        on_error: OnError = "raise",
        progress: bool = True,
        exclude: set[str] = frozenset(),
        keep_aspect: bool = False,
    ) -> Split:
        """train/good decoded, less the files named in EXCLUDE (refused by the caller)."""
        samples = [s for s in self.train_samples() if str(s.path) not in exclude]
        return load_split(samples, size, on_error, False, progress, keep_aspect)

    def load_test(
        self,
        size: tuple[int, int],
        on_error: OnError = "raise",
        progress: bool = True,
        keep_aspect: bool = False,
    ) -> Split:
        samples = self.test_samples()
        if not samples:
            raise DatasetError(f"{self.root / 'test'}: no test images")
        return load_split(samples, size, on_error, self.has_pixel_labels, progress, keep_aspect)


def load_mask(
    sample: Sample, image_size: tuple[int, int], size: tuple[int, int], keep_aspect: bool = False
) -> np.ndarray:
    """The sample's mask at `size` (nearest neighbour, placed as its image is), checked
    against its image's size."""
    if sample.mask_path is None:
        return np.zeros(size, dtype=bool)
    try:
        mask = decode_image(sample.mask_path)[..., 0] > 127
    except ImageDecodeError as error:
        raise DatasetError(f"not a decodable mask: {error}") from None
    if mask.shape != image_size:
        raise DatasetError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image "
            f"{sample.path} is {image_size[1]}x{image_size[0]}"
        )
    return resize(mask, size, keep_aspect, Image.Resampling.NEAREST).astype(bool)


def load_split(
    samples: list[Sample],
    size: tuple[int, int],
    on_error: OnError = "raise",
    pixel_labels: bool = False,
    progress: bool = True,
    keep_aspect: bool = False,
) -> Split:
    """Decode samples to arrays. A bad image raises DatasetError or is skipped with a warning."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    images, labels, masks, kept, skipped, boxes = [], [], [], [], [], []
    for sample in tqdm(samples, desc="decode images", unit="img", disable=not progress):
        try:
            image = decode_image(sample.path)
        except ImageDecodeError as error:
            if on_error == "raise":
                raise DatasetError(str(error)) from None
            log.warning("skipped %s", error)
            skipped.append(str(error))
            continue
        if pixel_labels:
            masks.append(load_mask(sample, image.shape[:2], size, keep_aspect))
        boxes.append(content_box(image.shape[:2], size, keep_aspect))
        images.append(resize(image, size, keep_aspect))
        labels.append(sample.label)
        kept.append(sample)
    if not images:
        raise DatasetError(f"no decodable images among {len(samples)} ({'; '.join(skipped[:3])})")
    return Split(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        masks=np.stack(masks) if pixel_labels else None,
        samples=kept,
        skipped=skipped,
        boxes=boxes if keep_aspect else None,
    )
