"""Cross-encoder reranking: the scorer, its Serve deployment and the router's adapter."""
