"""Triton: repository, server, front, model control, python backend, client."""
