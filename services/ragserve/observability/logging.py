"""Process-wide logging and library noise control, shared by the CLI and the Serve replicas."""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Loggers that repeat, with tracebacks, failures ragserve already reports once and plainly.
_QUIET = {
    "pymilvus": logging.CRITICAL,  # logs every failed RPC; StoreError carries the message
    "grpc._server": logging.CRITICAL,  # Milvus Lite's in-process server: "AllocTimestamp not implemented"
    "milvus_lite": logging.CRITICAL,  # a traceback when the file is locked; StoreError explains it
    "httpx": logging.WARNING,
    "sentence_transformers": logging.ERROR,
    "transformers": logging.ERROR,
}


def configure_logging(verbose: bool = False) -> None:
    """Call before the first import of transformers / vLLM: some settings are read at import time."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    os.environ["VLLM_LOGGING_STREAM"] = "ext://sys.stderr"  # stdout carries results (--json)
    if not verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("ragserve").setLevel(logging.INFO if verbose else logging.WARNING)
    # pymilvus applies its own logging config on import: import it first, then set levels.
    import pymilvus  # noqa: F401

    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else level)
