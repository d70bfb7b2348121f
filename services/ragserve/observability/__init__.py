"""Observability: logging setup (and, with Ray Serve, the metric definitions)."""
