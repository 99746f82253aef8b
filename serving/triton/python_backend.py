"""Triton python-backend model: the exported model.onnx run by onnxruntime on the CPU.

Copied as `model.py` into each version folder of the `python` repository flavour; it runs
inside Triton's python stub, so it imports nothing from anomalyops: serving/threads.py is
copied beside it and loaded from there. Triton checks dtype and shape against config.pbtxt
before a request reaches `execute`.

Threads: the config's `threads` parameter pins each instance's onnxruntime threads; `auto`
(the default) divides the CPUs the server is given (serving/threads.py) by the instance
count, so instances x threads never exceed them, and workers sleep rather than spin while
waiting (a spinning pool burns the share a busy node has left). The choice is logged.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _error(message: str) -> pb_utils.TritonError:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return (
        pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
    )


def _threads_module(folder: Path) -> ModuleType:
    """serving/threads.py as copied beside this file (registered first: dataclasses look
    their module up in sys.modules)."""
    spec = importlib.util.spec_from_file_location("anomalyops_threads", folder / "threads.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _instance_budget(folder: Path, config: dict):  # -> threads.Budget
    """This instance's threads: the config's pinned count, else the CPUs over the instances."""
    threads = _threads_module(folder)
    pinned = config.get("parameters", {}).get("threads", {}).get("string_value", "auto")
    if pinned != "auto":
        return threads.Budget(int(pinned), "the config's threads parameter")
    instances = sum(int(group.get("count", 1)) for group in config.get("instance_group") or [{}])
    return threads.cpu_budget().share(max(instances, 1))


class TritonPythonModel:
    """One onnxruntime session; a dynamic batch of requests runs as one ONNX call."""

    def initialize(self, args: dict) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        config = json.loads(args["model_config"])
        budget = _instance_budget(folder, config)
        options = ort.SessionOptions()
        options.intra_op_num_threads = budget.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        pb_utils.Logger.log_info(
            f"{args['model_name']} version {args['model_version']} instance "
            f"{args['model_instance_name']}: {budget.threads} onnxruntime threads ({budget.source})"
        )
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests: list) -> list:
        images, counts, responses = [], [], [None] * len(requests)
        for index, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, "image")
            if tensor is None:
                responses[index] = pb_utils.InferenceResponse(error=_error("missing input 'image'"))
                continue
            array = tensor.as_numpy()
            images.append(array)
            counts.append((index, len(array)))
        if images:
            try:
                anomaly_map, score = self.session.run(
                    ["anomaly_map", "score"], {"image": np.concatenate(images)}
                )
            except Exception as error:  # a bad batch must not take the model down
                for index, _ in counts:
                    responses[index] = pb_utils.InferenceResponse(error=_error(str(error)))
                return responses
            start = 0
            for index, count in counts:
                part = slice(start, start + count)
                start += count
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("anomaly_map", np.ascontiguousarray(anomaly_map[part])),
                        pb_utils.Tensor("score", score[part].reshape(-1, 1)),
                    ]
                )
        return responses
