"""The training side. Importing it sizes the OpenMP/MKL pools to this process's CPU budget
before torch or faiss load (serving/threads.py), so every step, the CLI and library use
start within the CPUs they are given; sizes a user or `--threads` already set are kept."""

from anomalyops.serving.threads import cpu_budget, set_pool_environment

set_pool_environment(cpu_budget().threads, replace=False)
