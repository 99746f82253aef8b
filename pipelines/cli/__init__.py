"""The `anomalyops` command line, one module per command group."""
