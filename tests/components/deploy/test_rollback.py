"""Rollback applies the variant name rule before it looks anything up."""

from __future__ import annotations

import pytest

from anomalyops.components.deploy.rollback import rollback
from anomalyops.serving.contract.names import InvalidNameError


@pytest.mark.parametrize("variant", ["../x", "Weld", "weld/../../etc"])
def test_a_bad_variant_is_refused_before_any_lookup(variant, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.pbtxt").write_text('name: "x"')  # what ../x would reach
    with pytest.raises(InvalidNameError, match="is invalid"):
        rollback("http://127.0.0.1:1", variant, tmp_path / "repo")
