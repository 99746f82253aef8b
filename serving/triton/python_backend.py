"""Triton python-backend model: the exported model.onnx run by onnxruntime on the CPU.

Copied as `model.py` into each version folder of the `python` repository flavour; it runs
inside Triton's python stub, so it imports nothing from anomalyops. Triton checks dtype
and shape against config.pbtxt before a request reaches `execute`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _error(message: str) -> pb_utils.TritonError:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return (
        pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
    )


class TritonPythonModel:
    """One onnxruntime session; a dynamic batch of requests runs as one ONNX call."""

    def initialize(self, args: dict) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        config = json.loads(args["model_config"])
        threads = int(
            config.get("parameters", {}).get("intra_op_threads", {}).get("string_value", 0)
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
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
