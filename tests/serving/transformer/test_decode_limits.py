"""Decode caps: encoded bytes, decoded bytes from the header, concurrent decodes."""

import threading
import time

import numpy as np
import pytest

from anomalyops.serving.images.decode import DecodeLimits, Decoder, ImageDecodeError, decode_image


def test_16_bit_bomb_is_refused_from_its_header(png16):
    data = png16(8000, 8000)
    assert len(data) < 200_000  # 64 M pixels in ~130 KB: pixels alone pass MAX_PIXELS
    started = time.monotonic()
    # 2 bytes a pixel as PIL holds it, then 3 as the RGB array it becomes.
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: 8000x8000 I;16 decodes to "
                                               r"320000000 bytes"):  # fmt: skip
        decode_image(data, "bomb.png", DecodeLimits(decoded_bytes=48 << 20))
    assert time.monotonic() - started < 0.5  # nothing was decoded


def test_one_bit_bomb_counts_the_rgb_array_it_becomes():
    """A 6900² 1-bit PNG is a few KB; PIL holds a byte a pixel and RGB makes three more."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (6900, 6900)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 20_000
    with pytest.raises(ImageDecodeError, match=r"6900x6900 1 decodes to 190440000 bytes"):
        decode_image(buffer.getvalue(), "one-bit.png", DecodeLimits(decoded_bytes=96 << 20))


def test_resized_decode_returns_the_small_image_and_the_source_size(png16):
    small, source = Decoder(DecodeLimits(), 1).resized(png16(300, 200, 65535), "ok.png", (64, 48))
    assert small.shape == (64, 48, 3) and source == (200, 300)


def test_encoded_cap_names_the_file(png16, tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png16(64, 64))
    with pytest.raises(ImageDecodeError, match=r"big\.png: file larger than 100 bytes"):
        decode_image(path, limits=DecodeLimits(encoded_bytes=100))
    with pytest.raises(ImageDecodeError, match="encoded bytes exceeds the limit of 100"):
        decode_image(path.read_bytes(), "x", DecodeLimits(encoded_bytes=100))


def test_16_bit_under_the_cap_decodes_in_integers(png16):
    pixels = Decoder(DecodeLimits(decoded_bytes=1 << 20), 1)(png16(300, 200, 65535), "ok.png")
    assert pixels.shape == (200, 300, 3) and pixels.dtype == np.uint8 and pixels.min() == 255


def test_decoder_waits_for_a_free_slot(png16):
    decoder = Decoder(DecodeLimits(), concurrent=2)
    for _ in range(2):  # two decodes in progress elsewhere
        decoder._slots.acquire()
    done = []
    worker = threading.Thread(target=lambda: done.append(decoder(png16(8, 8), "a.png")))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not done  # a third decode waits
    decoder._slots.release()
    worker.join(5)
    assert done and done[0].shape == (8, 8, 3)
