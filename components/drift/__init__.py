"""Drift checks on the prediction log against the champion's reference, with alert state."""
