"""Change the version a running Triton serves, through its repository API.

Triton runs with `--model-control-mode=explicit`. To serve version N, the model's
config.pbtxt is rewritten to name N (serving/repository.set_served) and Triton is asked
to load the model again. Triton loads N beside the old version, runs N's warm-up (a real
inference on N's graph) and only then swaps it in and retires the old one; requests keep
being answered throughout, and if N fails to load the old version stays. We then send a
real inference without a version, as a plant does, and require N to answer it; if it
does not, the old config is written back and reloaded. Without a Triton URL only the
repository changes, and `anomalyops serve` loads it at start.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from anomalyops.serving.contract.model import INPUT_NAME, SCORE_OUTPUT, load_contract
from anomalyops.serving.triton.repository import (
    prune_versions,
    served_version,
    set_served,
    write_atomically,
)
from anomalyops.serving.triton.server import control_headers


class ModelControlError(RuntimeError):
    """Triton could not load or answer with a version; the message says which and why."""


def _client(url: str, timeout: float) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(
        url.removeprefix("http://"), connection_timeout=timeout, network_timeout=timeout
    )


def load(url: str, name: str, repository: str | Path, timeout: float = 600.0) -> None:
    """Ask Triton to (re)load NAME from REPOSITORY (whose token it needs); raises with why."""
    client = _client(url, timeout)
    try:
        client.load_model(name, headers=control_headers(repository))
    except InferenceServerException as error:
        raise ModelControlError(f"Triton at {url} could not load {name!r}: "
                                f"{error.message().splitlines()[0]}") from None  # fmt: skip
    except OSError as error:
        raise ModelControlError(f"Triton at {url} unreachable: {error}") from None
    finally:
        client.close()


def probe(url: str, name: str, model_dir: Path, timeout: float = 60.0) -> str:
    """Send one real inference without a version (as a plant does); the version answering."""
    contract = load_contract(model_dir)
    image = np.zeros((1, contract.height, contract.width, contract.channels), np.uint8)
    tensor = triton_http.InferInput(INPUT_NAME, list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image)
    client = _client(url, timeout)
    try:
        result = client.infer(name, [tensor])
    except (InferenceServerException, OSError) as error:
        raise ModelControlError(f"{name!r} on {url} did not answer an inference: {error}") from None
    finally:
        client.close()
    if not np.isfinite(result.as_numpy(SCORE_OUTPUT)).all():
        raise ModelControlError(f"{name!r} on {url} answered a non-finite score")
    return str(result.get_response()["model_version"])


def switch_version(repository: str | Path, name: str, version: int,
                   triton_url: str | None = None) -> int | None:  # fmt: skip
    """Serve VERSION of NAME (Triton too, when TRITON_URL); returns the version it replaced.

    On failure the previous version is put back (repository and Triton) and
    ModelControlError says why. Call it under repository.model_lock.
    """
    model_dir = Path(repository) / name
    previous = served_version(model_dir)
    config, contract = model_dir / "config.pbtxt", model_dir / "model.json"
    before = {path: path.read_text() if path.is_file() else None for path in (config, contract)}
    set_served(model_dir, version)
    if triton_url:
        try:
            load(triton_url, name, repository)
            answered = probe(triton_url, name, model_dir / str(version))
            if answered != str(version):
                raise ModelControlError(f"{name!r} answered as version {answered}, not {version}")
        except Exception as error:  # whatever failed, the old version must serve on
            for path, text in before.items():  # back to exactly what was there
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    write_atomically(path, text)
            if previous is not None:
                with contextlib.suppress(ModelControlError):
                    load(triton_url, name, repository)
            keeps = f"version {previous} keeps serving" if previous else "nothing was served"
            raise ModelControlError(
                f"{name} version {version} not served ({error}); {keeps}"
            ) from None
    prune_versions(model_dir)
    return previous
