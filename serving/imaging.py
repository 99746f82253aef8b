"""Image bytes to the model's uint8 RGB input: one decoder for training and serving.

Training and serving must turn a file into pixels the same way, or the exported model
scores differently from the trained one. Both sides call `decode_image` and `resize`.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

# A decompression bomb (a tiny file that inflates to gigapixels) is refused, not decoded.
MAX_PIXELS = 64 * 1024 * 1024


class ImageDecodeError(ValueError):
    """An image that cannot be decoded; the message names its source."""


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL mode (1, L, P, RGBA, CMYK, I;16, I, F, ...) as H×W×3 uint8.

    16-bit grey is scaled by 255/65535 in integers (rounded), never through float64: a
    16-bit 20-megapixel frame would need 160 MB per copy in float64.
    """
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        pixels = np.asarray(image)
        if image.mode == "F":
            pixels = np.rint(np.nan_to_num(pixels, nan=0.0, posinf=65535.0, neginf=0.0))
        wide = image.mode.startswith("I;16") or pixels.max(initial=0) > 255
        pixels = np.clip(pixels, 0, 65535 if wide else 255).astype(np.uint32)
        gray = ((pixels * 255 + 32767) // 65535 if wide else pixels).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_image(source: bytes | str | Path, name: str | None = None) -> np.ndarray:
    """Decode a file or bytes to an H×W×3 uint8 RGB array, or raise ImageDecodeError."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"{label}: cannot read file ({error.strerror or error})") from None
    if not data:
        raise ImageDecodeError(f"{label}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageDecodeError(
                        f"{label}: {width}x{height} pixels exceeds the limit of {MAX_PIXELS}"
                    )
                image.load()
                return _to_rgb_array(image)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"{label}: refused as a decompression bomb ({error})") from None
    except Exception as error:  # PIL raises many types for bad data; name the file instead
        raise ImageDecodeError(f"{label}: not a decodable image ({error})") from None


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize H×W×3 uint8 to (height, width) with PIL's antialiased bilinear filter."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def png_base64(image: np.ndarray | Image.Image) -> str:
    """An image as base64 PNG text: masks in responses, pictures inlined in reports."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def load_image(
    source: bytes | str | Path, size: tuple[int, int], name: str | None = None
) -> np.ndarray:
    """Decode and resize: exactly what the model's `image` input expects."""
    return resize(decode_image(source, name), size)
