"""Evaluating detectors: metrics on raw scores, the evaluate step, champion vs challenger."""
