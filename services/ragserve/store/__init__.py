"""Milvus access: schema, index params, upsert/delete/search, filters (Milvus Lite file or a server URI)."""
