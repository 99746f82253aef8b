"""From a registered model to what serves it: export, Triton repository, KServe, rollback."""
