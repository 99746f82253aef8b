"""Issue #12: six concurrent 16-bit 8000x8000 PNGs took the transformer from 0.44 to 9.56 GB."""

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from anomalyops.serving.ports import free_port
from anomalyops.serving.transformer.server import TransformerProcess


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def send_six(url: str, image: bytes) -> list[tuple[int, float, str]]:
    body = {"instances": [{"image": {"b64": base64.b64encode(image).decode()}}]}

    def one(_: int) -> tuple[int, float, str]:
        started = time.monotonic()
        response = httpx.post(f"{url}:predict", json=body, timeout=120)
        return response.status_code, time.monotonic() - started, response.text

    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(one, range(6)))


@pytest.mark.slow  # its own transformer, six 4000x4000 decodes on two cores
def test_sixteen_bit_bombs_cost_neither_memory_nor_time(triton, python_repository, png16,
                                                        tmp_path):  # fmt: skip
    process = TransformerProcess("weld", triton.url, python_repository, tmp_path / "log.db",
                                 free_port(), options=["--keep_images", "none"])  # fmt: skip
    with process as url:
        pid = process.process.pid
        send_six(url, png16(256, 256))  # warm: first requests load what serving needs
        warm = peak_rss_mb(pid)
        refused = send_six(url, png16(8000, 8000))
        after_bombs = peak_rss_mb(pid)
        accepted = send_six(url, png16(4000, 4000))  # 32 MB decoded each: under the cap
        after_large = peak_rss_mb(pid)
    print(f"\npeak RSS MB: warm {warm:.0f}, after six 8000x8000 bombs {after_bombs:.0f}, "
          f"after six 4000x4000 16-bit {after_large:.0f}; bomb answers "
          f"{max(t for _, t, _ in refused):.2f} s at most, 4000x4000 "
          f"{max(t for _, t, _ in accepted):.2f} s at most")  # fmt: skip
    assert all(status == 400 and "over the limit" in text for status, _, text in refused)
    assert max(seconds for _, seconds, _ in refused) < 5
    assert after_bombs - warm < 50
    assert all(status == 200 for status, _, _ in accepted), accepted[0][2]
    # Two decodes at a time (the default): about two decodes' worth of memory, not six.
    assert after_large - warm < 700
