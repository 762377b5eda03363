"""Airlock's engine: reads model files without executing them. Never imports Qt."""

__version__ = "0.1.0"
