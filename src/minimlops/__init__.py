"""minimlops: a minimal, production-grade MLOps pipeline for tabular models."""

__version__ = "0.1.0"
