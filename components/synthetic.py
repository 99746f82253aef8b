"""Synthetic parts with planted defects, so the demo runs on a machine with no data.

Never used to claim accuracy: real numbers come from ../shared/data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEFECTS = ("scratch", "spot")


def _part(rng: np.random.Generator, size: int) -> Image.Image:
    """A washer-like part: textured disc with a hole, small jitter in place and light."""
    base = int(rng.integers(95, 110))
    noise = rng.normal(0, 6, (size, size)).astype(np.float32)
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(image)
    centre = size / 2 + rng.normal(0, size * 0.01, 2)
    outer, inner = size * 0.38, size * 0.14
    tone = int(rng.integers(180, 195))
    draw.ellipse([*(centre - outer), *(centre + outer)], fill=(tone, tone, tone - 10))
    ring = size * 0.27
    draw.ellipse([*(centre - ring), *(centre + ring)], outline=(tone - 40,) * 3, width=3)
    draw.ellipse([*(centre - inner), *(centre + inner)], fill=(40, 40, 45))
    return image.filter(ImageFilter.GaussianBlur(1.2))


def _plant(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """Draw a defect on the part; return its mask (mode L, 0/255)."""
    size = image.size[0]
    mask = Image.new("L", image.size, 0)
    angle = rng.uniform(0, 2 * np.pi)
    radius = size * rng.uniform(0.18, 0.32)
    x, y = size / 2 + radius * np.cos(angle), size / 2 + radius * np.sin(angle)
    for target, colour in ((image, None), (mask, 255)):
        draw = ImageDraw.Draw(target)
        if kind == "scratch":
            dx, dy = rng.normal(0, size * 0.08, 2)
            fill = colour if colour is not None else (70, 60, 55)
            draw.line([x, y, x + dx, y + dy], fill=fill, width=3)
        else:
            r = size * rng.uniform(0.025, 0.045)
            fill = colour if colour is not None else (60, 45, 35)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    return mask


def make_synthetic_dataset(
    root: str | Path,
    train: int = 40,
    test_good: int = 10,
    test_defect: int = 8,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write a small MVTec-AD-style dataset of synthetic parts under `root`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for folder, count in (("train/good", train), ("test/good", test_good)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _part(rng, size).save(root / folder / f"{i:03d}.png")
    for kind in DEFECTS:
        (root / "test" / kind).mkdir(parents=True, exist_ok=True)
        (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(test_defect):
            image = _part(rng, size)
            mask = _plant(image, kind, rng)
            image.save(root / "test" / kind / f"{i:03d}.png")
            mask.save(root / "ground_truth" / kind / f"{i:03d}_mask.png")
    (root / "README.md").write_text("Synthetic parts with planted defects (demo only).\n")
    return root
