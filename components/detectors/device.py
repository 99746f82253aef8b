"""Where a detector computes: `auto` takes a CUDA GPU when torch sees one, else the CPU.

Saved and exported models never hold device tensors: a model fit on a GPU loads on a CPU
line and scores the same within the tolerance `make gpu-check` states.
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


class DeviceUnavailableError(RuntimeError):
    """The device asked for is not on this machine."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """torch.device for `auto`, `cpu`, `cuda` or `cuda:N`, with a clear error if absent."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, number = name.partition(":")
    if kind not in ("cpu", "cuda") or (number and not number.isdigit()):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {name!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {name!r} asked for, but torch sees no CUDA GPU here "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                "use --device cpu or auto"
            )
        if number and int(number) >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA GPU(s) here"
            )
    return torch.device(name)
