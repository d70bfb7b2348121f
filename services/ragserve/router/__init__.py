"""HTTP API: request/response models, errors, the RAG service behind the endpoints, the Serve ingress."""
