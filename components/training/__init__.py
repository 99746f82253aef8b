"""Training a detector into a model folder: fit, thresholds, few-shot adaptation."""
