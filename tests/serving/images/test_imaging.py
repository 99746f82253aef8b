import io

import numpy as np
import pytest
from PIL import Image

from anomalyops.serving.images.decode import (
    MAX_PIXELS,
    ImageDecodeError,
    content_box,
    decode_image,
    load_image,
    resize,
)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "LA", "CMYK"])
def test_every_mode_decodes_to_rgb_uint8(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    pixels = decode_image(encode(image, fmt))
    assert pixels.shape == (10, 20, 3) and pixels.dtype == np.uint8


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    pixels = decode_image(encode(Image.fromarray(values)))
    assert pixels[0, :, 0].tolist() == [0, 128, 255]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_grey_replicates_to_three_equal_channels():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    pixels = decode_image(encode(Image.fromarray(grey)))
    assert (pixels == grey[..., None]).all()


def test_empty_truncated_and_garbage_name_the_source(tmp_path):
    good = encode(Image.new("RGB", (64, 64), (1, 2, 3)))
    cases = {"empty.png": b"", "truncated.png": good[: len(good) // 2], "junk.png": b"not an image"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageDecodeError, match=name):
            decode_image(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read"):
        decode_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused():
    side = int(MAX_PIXELS**0.5) + 64
    bomb = encode(Image.new("1", (side, side)))
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageDecodeError, match=r"exceeds|bomb"):
        decode_image(bomb)


def test_load_image_resizes_to_model_input():
    pixels = load_image(encode(Image.new("RGB", (400, 120), (9, 9, 9))), (256, 256))
    assert pixels.shape == (256, 256, 3)


def test_a_kept_aspect_scales_by_one_factor_and_centres_on_black():
    strip = np.full((100, 400, 3), 200, np.uint8)
    pixels = load_image(encode(Image.fromarray(strip)), (256, 256), keep_aspect=True)
    rows, columns = content_box((100, 400), (256, 256), True)
    assert (rows.start, rows.stop, columns.start, columns.stop) == (96, 160, 0, 256)
    assert (pixels[rows, columns] == 200).all()
    assert pixels.sum() == pixels[rows, columns].sum()  # the border is black
    assert content_box((100, 400), (256, 256), False) == (slice(0, 256), slice(0, 256))
    mask = np.zeros((100, 400), bool)
    mask[40:60, 180:220] = True  # a mask lands where its image does
    placed = resize(mask, (256, 256), True, Image.Resampling.NEAREST)
    assert placed.dtype == bool and placed[rows, columns].sum() == placed.sum() > 0
    assert placed[122:134, 118:138].all()
    square = np.full((50, 50, 3), 7, np.uint8)  # a shape that fills the input: no border
    assert (resize(square, (256, 256), True) == resize(square, (256, 256))).all()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_common_formats_decode_alike(fmt, mode):
    gradient = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    image = Image.fromarray(gradient).convert(mode)
    pixels = decode_image(encode(image, fmt))
    tolerance = 0 if fmt in ("PNG", "BMP", "TIFF") else 6  # JPEG and WebP are lossy
    assert pixels.shape == (16, 64, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - gradient[..., None]).max() <= tolerance


def test_16_bit_tiff_and_32_bit_integer_grey_scale_by_range():
    values = np.array([[0, 257, 65535]], dtype=np.uint16)
    assert decode_image(encode(Image.fromarray(values), "TIFF"))[0, :, 0].tolist() == [0, 1, 255]
    wide = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32), mode="I")
    assert decode_image(encode(wide, "TIFF"))[0, :, 0].tolist() == [0, 4, 255]


def _png_rgb16(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand: PIL cannot write one."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(rows)),
            chunk(b"IEND", b""),
        ]
    )


def test_16_bit_rgb_png_keeps_its_colours():
    pixels = np.zeros((2, 3, 3), dtype=np.uint16)
    pixels[..., 0], pixels[..., 2] = 65535, 32896
    decoded = decode_image(_png_rgb16(pixels))
    assert decoded[..., 0].min() == 255 and decoded[..., 1].max() == 0
    assert abs(int(decoded[0, 0, 2]) - 128) <= 1
