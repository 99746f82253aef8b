"""`python -m anomalyops.serving.transformer`: the KServe transformer's server."""

from anomalyops.serving.transformer.server import main

main()
