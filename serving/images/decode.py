"""Image bytes to the model's uint8 RGB input: one decoder for training and serving.

Training and serving must turn a file into pixels the same way, or the exported model
scores differently from the trained one. Both sides call `decode_image` and `resize`.

A model either stretches every image to its input, or keeps each image's aspect
(`keep_aspect`): scaled by one factor to fit, centred on black. `content_box` says where
the image then lies in the input, so a map can be cut back to the image's own shape.
"""

from __future__ import annotations

import base64
import io
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# A decompression bomb (a tiny file that inflates to gigapixels) is refused, not decoded.
MAX_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may cost, checked before any pixel is decoded.

    Pixels alone undercount: a 124 KB 16-bit 8000x8000 PNG is 64 M pixels but 128 MB
    decoded. `decoded_bytes` counts width x height x channels x bytes per sample from
    the header. The defaults suit training files; a server passes tighter ones.
    """

    encoded_bytes: int = 256 << 20
    decoded_bytes: int = 512 << 20  # a 16-bit 8000² frame peaks at 320 MB
    pixels: int = MAX_PIXELS


DEFAULT_LIMITS = DecodeLimits()


class ImageDecodeError(ValueError):
    """An image that cannot be decoded; the message names its source."""


# 16-bit value -> 8-bit value, rounded: (v * 255 + 32767) // 65535.
_SIXTEEN_TO_EIGHT = ((np.arange(65536, dtype=np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL mode (1, L, P, RGBA, CMYK, I;16, I, F, ...) as H×W×3 uint8.

    16-bit grey is scaled by 255/65535 (rounded) through a lookup table, never through
    float64 or wide temporaries: a 16-bit 16-megapixel frame costs its 8-bit result only.
    """
    if image.mode.startswith("I;16"):
        return np.repeat(_SIXTEEN_TO_EIGHT[np.asarray(image)][..., None], 3, axis=2)
    if image.mode in ("I", "F"):
        pixels = np.asarray(image)
        if image.mode == "F":
            pixels = np.rint(np.nan_to_num(pixels, nan=0.0, posinf=65535.0, neginf=0.0))
        wide = pixels.max(initial=0) > 255
        pixels = np.clip(pixels, 0, 65535 if wide else 255).astype(np.uint16)
        gray = _SIXTEEN_TO_EIGHT[pixels] if wide else pixels.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decoded_bytes(image: Image.Image) -> int:
    """Bytes a decode holds at its peak, from the header alone (nothing decoded).

    PIL's pixels in their own mode (mode "1" takes a byte a pixel, 16-bit two) plus the
    H×W×3 uint8 array they become: a 1-bit 6900² PNG of 6 KB holds 48 MB + 143 MB.
    """
    mode = image.mode
    sample = 2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1
    width, height = image.size
    return width * height * (Image.getmodebands(mode) * sample + 3)


def printable(path: str | Path) -> str:
    """PATH as text that prints anywhere: bytes that are not UTF-8 shown as \\xNN escapes
    (a file name like b'\\xff\\xfe_bad.png' would otherwise fail every print)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def decode_image(
    source: bytes | str | Path, name: str | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode a file or bytes to an H×W×3 uint8 RGB array, or raise ImageDecodeError."""
    label = name or (printable(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        if not isinstance(source, bytes):
            info = Path(source).stat()  # follows links: a dangling one or a loop fails here
            if not stat.S_ISREG(info.st_mode):  # a folder, FIFO or device: reading would block
                raise ImageDecodeError(f"{label}: not a regular file")
            if info.st_size > limits.encoded_bytes:
                raise ImageDecodeError(f"{label}: file larger than {limits.encoded_bytes} bytes")
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"{label}: cannot read file ({error.strerror or error})") from None
    if not data:
        raise ImageDecodeError(f"{label}: empty file (0 bytes)")
    if len(data) > limits.encoded_bytes:
        raise ImageDecodeError(
            f"{label}: {len(data)} encoded bytes exceeds the limit of {limits.encoded_bytes}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > limits.pixels:
                    raise ImageDecodeError(
                        f"{label}: {width}x{height} pixels exceeds the limit of {limits.pixels}"
                    )
                if (size := decoded_bytes(image)) > limits.decoded_bytes:
                    raise ImageDecodeError(
                        f"{label}: {width}x{height} {image.mode} decodes to {size} bytes, "
                        f"over the limit of {limits.decoded_bytes}"
                    )
                image.load()
                return _to_rgb_array(image)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"{label}: refused as a decompression bomb ({error})") from None
    except Exception as error:  # PIL raises many types for bad data; name the file instead
        raise ImageDecodeError(f"{label}: not a decodable image ({error})") from None


class Decoder:
    """Decodes under LIMITS, at most CONCURRENT at once: a server's memory budget for
    decoding is then about CONCURRENT x the decoded-bytes cap (times the RGB copies)."""

    def __init__(self, limits: DecodeLimits, concurrent: int) -> None:
        if concurrent < 1:
            raise ValueError(f"concurrent decodes must be at least 1, got {concurrent}")
        self.limits = limits
        self._slots = threading.BoundedSemaphore(concurrent)

    def __call__(self, data: bytes, name: str) -> np.ndarray:
        with self._slots:
            return decode_image(data, name, self.limits)

    def resized(
        self, data: bytes, name: str, size: tuple[int, int], keep_aspect: bool = False
    ) -> tuple[np.ndarray, tuple]:
        """The image resized to SIZE and its (height, width) as received.

        The slot is held until the full-size pixels are gone, so CONCURRENT bounds what
        decoding holds at once, not only how many decodes start.
        """
        with self._slots:
            image = decode_image(data, name, self.limits)
            source = image.shape[:2]
            small = resize(image, size, keep_aspect)
            del image
            return small, source


def content_box(
    source: tuple[int, int], size: tuple[int, int], keep_aspect: bool
) -> tuple[slice, slice]:
    """(rows, columns) of the model input of SIZE that an image of SOURCE (height, width)
    fills: all of it when stretched, a centred box scaled by one factor when its aspect is
    kept."""
    height, width = size
    if not keep_aspect:
        return slice(0, height), slice(0, width)
    scale = min(height / source[0], width / source[1])
    rows = min(height, max(1, round(source[0] * scale)))
    columns = min(width, max(1, round(source[1] * scale)))
    top, left = (height - rows) // 2, (width - columns) // 2
    return slice(top, top + rows), slice(left, left + columns)


def resize(
    image: np.ndarray,
    size: tuple[int, int],
    keep_aspect: bool = False,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> np.ndarray:
    """Resize H×W(×C) to (height, width) with PIL's antialiased bilinear filter (masks:
    nearest); with KEEP_ASPECT the image fills only its content_box, the rest is 0."""
    box = content_box(image.shape[:2], size, keep_aspect)
    fitted = (box[0].stop - box[0].start, box[1].stop - box[1].start)
    if image.shape[:2] != fitted:
        image = np.asarray(Image.fromarray(image).resize(fitted[::-1], resample))
    if fitted == tuple(size):
        return image
    canvas = np.zeros((*size, *image.shape[2:]), image.dtype)
    canvas[box] = image
    return canvas


def png_base64(image: np.ndarray | Image.Image) -> str:
    """An image as base64 PNG text: masks in responses, pictures inlined in reports."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def load_image(
    source: bytes | str | Path,
    size: tuple[int, int],
    name: str | None = None,
    keep_aspect: bool = False,
) -> np.ndarray:
    """Decode and resize: exactly what the model's `image` input expects."""
    return resize(decode_image(source, name), size, keep_aspect)
