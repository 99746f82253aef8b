"""Each good image described (hashes, size, format, brightness, contrast, sharpness), and
the hard image rules on those descriptions: what the validate step's suite checks, and
what `fit` applies to train/good without Great Expectations (`screen`)."""

from __future__ import annotations

import hashlib
import io
import stat
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anomalyops.serving.images.decode import ImageDecodeError, decode_image
from anomalyops.serving.images.statistics import grey, image_statistics

# Hard limits, chosen on the good sets in ../shared/data: their sides are 101-617 px, their
# largest |robust z| is 5.1 (weld contrast), 3.6 (bottle), 2.9 (tile). An image beyond
# these is no photograph of a part (a 1x1 file, a blank or blown-out frame, a thumbnail).
MIN_SIDE = 32
FAR_Z = 10.0
FAR_AREA_RATIO = 100.0  # pixel count 100x above or below the set's median
MIN_FOR_OUTLIERS = 10  # fewer decodable images give no stable median/MAD: no far-z failures
MIN_CONTRAST = 1.0  # grey-level std below this is a blank frame (dead or blown-out camera)
# Bits per channel for PIL modes; anything unlisted is reported as 8.
BIT_DEPTH = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}


def dhash(gray: np.ndarray, size: int = 8) -> str:
    """Difference hash: 64 bits of "is the next pixel brighter", robust to small changes."""
    small = np.asarray(
        Image.fromarray(gray).resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16
    )
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):0{size * size // 4}x}"


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def robust_z(values: np.ndarray) -> np.ndarray:
    """Median/MAD z-score: one bad image cannot hide itself by moving the mean."""
    values = np.asarray(values, dtype=np.float64)
    median = np.nanmedian(values)
    mad = np.nanmedian(np.abs(values - median))
    scale = 1.4826 * mad if mad > 0 else np.nanmean(np.abs(values - median)) * 1.2533
    if not scale or not np.isfinite(scale):
        return np.zeros_like(values)
    return (values - median) / scale


def statistic_z(column: str, values: np.ndarray) -> np.ndarray:
    """Robust z-scores of one image statistic over a set, on the scale the suite judges it:
    sharpness spans orders of magnitude, so it is compared on a log scale."""
    values = np.asarray(values, dtype=np.float64)
    return robust_z(np.log10(values + 1e-3) if column == "sharpness" else values)


def screen(paths: list[Path]) -> dict[str, str]:
    """{file: reason} for each image the suite's hard image rules refuse, without Great
    Expectations (what `fit` applies to train/good): too small, blank, and, with at least
    MIN_FOR_OUTLIERS images, pixel count or lighting, contrast and focus far beyond the
    set (the same thresholds as `_suite`'s min_size, blank and *_far_outliers). An image
    that does not decode is not listed here: the loader reports it."""
    rows = [row for row in map(describe_image, paths) if row["decode_ok"]]
    refused = {}
    for row in rows:
        if min(row["width"], row["height"]) < MIN_SIDE:
            refused[row["path"]] = f"{row['width']}x{row['height']} px, a side under {MIN_SIDE}"
        elif row["contrast"] < MIN_CONTRAST:
            refused[row["path"]] = f"blank (grey-level std {row['contrast']:.2f} < {MIN_CONTRAST})"
    if len(rows) >= MIN_FOR_OUTLIERS:
        areas = np.log10([row["width"] * row["height"] for row in rows])
        far_area = np.abs(areas - np.median(areas)) > np.log10(FAR_AREA_RATIO)
        for row, far in zip(rows, far_area, strict=True):
            if far:
                refused.setdefault(row["path"], f"pixel count over {FAR_AREA_RATIO:.0f}x "
                                                "from the set's median")  # fmt: skip
        for column in ("brightness", "contrast", "sharpness"):
            scores = statistic_z(column, np.array([row[column] for row in rows]))
            for row, z in zip(rows, scores, strict=True):
                if abs(z) > FAR_Z:
                    refused.setdefault(row["path"], f"{column} {z:+.1f} robust z-scores from "
                                                    "the set: no part photograph")  # fmt: skip
    return refused


def describe_image(path: Path) -> dict:
    """One manifest row; `decode_ok` False (with the error) instead of raising."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block read_bytes forever
            raise IsADirectoryError(0, "not a regular file") if path.is_dir() else OSError(
                0, "not a regular file (a FIFO or device)")  # fmt: skip
        data = path.read_bytes()
    except OSError as error:  # a folder named x.png, a symlink loop, no permission
        data, unreadable = b"", f"{path}: not a readable file ({error.strerror or error})"
    else:
        unreadable = None
    row: dict[str, Any] = {
        "path": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "dhash": None,
        "format": path.suffix.lower().lstrip("."),
        "width": None,
        "height": None,
        "channels": None,
        "bit_depth": None,
        "brightness": None,
        "contrast": None,
        "sharpness": None,
        "decode_ok": False,
        "error": None,
    }
    if unreadable:
        row["error"] = unreadable
        return row
    try:
        pixels = decode_image(data, name=str(path))
        with Image.open(io.BytesIO(data)) as image:
            row["format"] = (image.format or row["format"]).lower()
            row["channels"] = len(image.getbands())
            row["bit_depth"] = BIT_DEPTH.get(image.mode, 8)
    except ImageDecodeError as error:
        row["error"] = str(error)
        return row
    row.update(
        height=int(pixels.shape[0]),
        width=int(pixels.shape[1]),
        dhash=dhash(grey(pixels)),
        decode_ok=True,
        **image_statistics(pixels),
    )
    return row


def build_manifest(paths: list[Path], near_duplicate_bits: int = 4, z_limit: float = 3.5):
    """The manifest DataFrame, with near-duplicate and robust-z columns for the suite."""
    import pandas as pd

    frame = pd.DataFrame([describe_image(p) for p in paths])
    frame["size"] = [
        f"{w}x{h}" if ok else None
        for w, h, ok in zip(frame["width"], frame["height"], frame["decode_ok"], strict=True)
    ]
    near: list[str | None] = [None] * len(frame)
    hashes = list(zip(frame["dhash"], frame["sha256"], frame["path"], strict=True))
    for i, (hash_i, sha_i, _) in enumerate(hashes):
        for hash_j, sha_j, path_j in hashes[:i]:
            if (
                hash_i
                and hash_j
                and sha_i != sha_j
                and hamming(hash_i, hash_j) <= near_duplicate_bits
            ):
                near[i] = path_j
                break
    frame["near_duplicate_of"] = near
    ok = frame["decode_ok"].to_numpy(bool)
    width = frame["width"].to_numpy(dtype=np.float64, na_value=np.nan)
    height = frame["height"].to_numpy(dtype=np.float64, na_value=np.nan)
    frame["min_side"] = np.minimum(width, height)
    area = np.log10(width * height)
    frame["area_log_ratio"] = np.round(area - np.nanmedian(area[ok]) if ok.any() else area, 3)
    for column in ("brightness", "contrast", "sharpness"):
        values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
        z = np.full(len(frame), np.nan)
        z[ok] = statistic_z(column, values[ok])
        frame[f"{column}_z"] = np.round(z, 3)
    return frame
