import io

import numpy as np
import pytest
from PIL import Image

from anomalyops.serving.imaging import MAX_PIXELS, ImageDecodeError, decode_image, load_image


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
