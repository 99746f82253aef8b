"""The KServe transformer: image bytes in, score, label and mask out, via Triton."""
