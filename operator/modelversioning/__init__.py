"""modelversioning: ML model versions as immutable, auditable Kubernetes objects."""

__version__ = "0.1.0"
