"""Embedding: the sentence-transformers Encoder (and, with Ray Serve, the batched Embedder deployment)."""
