"""The exported-model contract serving reads: model.json, reference, checks, names."""
