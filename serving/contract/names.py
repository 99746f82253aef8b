"""One naming rule for product variants: a registered model, a Triton model, a KServe object.

A variant's name travels unchanged into MLflow (registered model, filter strings), Triton
(a folder and `name: "..."` in config.pbtxt) and Kubernetes (InferenceService, labels).
The strictest of these wins: a DNS-1035 label (lowercase letters, digits and '-', starting
with a letter, ending alphanumeric), because KServe names Services after the
InferenceService. '_' and '.' are refused: Kubernetes rejects them in Service names, and
a name that had to be rewritten for the cluster would no longer match its registry entry.
At most 40 characters, so KServe's suffixes ("-transformer-00001-deployment") still fit
Kubernetes' 63. Quotes, slashes and dots can therefore never reach a filter, a path or a
config file.
"""

from __future__ import annotations

import re

MAX_LENGTH = 40
PATTERN = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class InvalidNameError(ValueError):
    """A variant or model name breaks the rule; the message shows the name and the rule."""


def check_name(name: object, what: str = "variant") -> str:
    """NAME itself when it is a valid variant/model name; InvalidNameError otherwise."""
    if not isinstance(name, str) or not PATTERN.fullmatch(name) or len(name) > MAX_LENGTH:
        raise InvalidNameError(
            f"{what} name {name!r} is invalid: use lowercase letters, digits and '-', "
            f"starting with a letter and ending with a letter or digit, at most {MAX_LENGTH} "
            "characters (one name for MLflow, Triton and Kubernetes)"
        )
    return name
