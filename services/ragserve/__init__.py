"""ragserve: a production RAG service (Milvus retrieval + vLLM generation on Ray Serve)."""

__version__ = "0.1.0"
