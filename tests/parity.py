"""How close an exported model must score to the trained one, wherever that is checked
(onnxruntime in process, Triton's Python backend): one set of limits for every test."""

RTOL, ATOL = 1e-4, 1e-3
# Maps of standardised PaDiM (weld is standardised by default: its brightness varies):
# seen |Δ| ≤ 0.025, relative ≤ 8.4e-4. onnxruntime and torch sum the per-image mean/std
# in a different order and PaDiM's inverse covariance amplifies the difference.
MAP_RTOL = 2e-3
