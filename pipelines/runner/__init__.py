"""Running pipelines: compile, kfp.local or kfp.Client, process group, step logs."""
