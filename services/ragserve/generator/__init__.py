"""Generation: prompt building, the vLLM engine, and the locally generated tiny Llama for CPU runs."""
