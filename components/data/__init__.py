"""Good-image datasets: reading, identity, validation, synthetic parts, storage."""
