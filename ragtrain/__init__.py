"""ragtrain: fine-tune text embedding models for retrieval."""

__version__ = "0.1.0"
