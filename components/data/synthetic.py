"""Synthetic parts with planted defects (the demo runs on a machine with no data), and
defects pasted onto real good images (settings are chosen on those, never on a test split).

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


def paste_defects(
    images: np.ndarray,
    seed: int = 0,
    area: tuple[float, float] = (0.001, 0.01),
    boxes: list[tuple[slice, slice]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CutPaste-style defects on good images, for choosing settings without a test split.

    Each image gets a patch cut from another image of the set (a different place and
    look), rotated by a multiple of 90°, its brightness scaled by 0.6–0.8 or 1.25–1.5 and
    pasted at a random place: `area` is the patch's share of the image, small on purpose
    (real defects are often 0.04 % of a frame). BOXES (a Split's) keep the cut and the
    paste inside each image's own box, off a kept aspect's black border.
    Returns the images and their bool masks.
    """
    rng = np.random.default_rng(seed)
    count = len(images)
    out, masks = images.copy(), np.zeros(images.shape[:3], dtype=bool)
    whole = (slice(0, images.shape[1]), slice(0, images.shape[2]))
    spans = [(r.start, c.start, r.stop - r.start, c.stop - c.start)
             for r, c in (boxes or [whole] * count)]  # fmt: skip
    for index in range(count):
        top, left, height, width = spans[index]
        share = rng.uniform(*area)
        aspect = rng.uniform(0.3, 3.0)
        h = int(np.clip(round(np.sqrt(share * height * width / aspect)), 2, height // 2))
        w = int(np.clip(round(np.sqrt(share * height * width * aspect)), 2, width // 2))
        other = (index + 1 + rng.integers(max(1, count - 1))) % count
        s_top, s_left, s_height, s_width = spans[other]
        h, w = min(h, s_height), min(w, s_width)
        y0 = s_top + rng.integers(0, s_height - h + 1)
        x0 = s_left + rng.integers(0, s_width - w + 1)
        patch = np.rot90(images[other][y0 : y0 + h, x0 : x0 + w], int(rng.integers(4)))
        gain = rng.choice([rng.uniform(0.6, 0.8), rng.uniform(1.25, 1.5)])
        patch = np.clip(patch.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        ph, pw = min(patch.shape[0], height), min(patch.shape[1], width)
        patch = patch[:ph, :pw]
        y = top + rng.integers(0, height - ph + 1)
        x = left + rng.integers(0, width - pw + 1)
        out[index, y : y + ph, x : x + pw] = patch
        masks[index, y : y + ph, x : x + pw] = True
    return out, masks
