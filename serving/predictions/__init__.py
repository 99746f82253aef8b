"""The prediction log, the review page and what it counts."""
