"""The MLflow registry: registration, the promotion gate, aliases, the variant lock."""
