"""Ingestion: load files, clean text, chunk, embed, upsert into the store (idempotent)."""
