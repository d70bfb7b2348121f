"""Process-wide logging and library noise control for the CLI and the load-test scripts."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# Loggers that repeat, with tracebacks, failures ragserve already reports once and plainly.
_QUIET = {
    "pymilvus": logging.CRITICAL,  # logs every failed RPC; StoreError carries the message
    "grpc._server": logging.CRITICAL,  # Milvus Lite's in-process server: "AllocTimestamp not implemented"
    "milvus_lite": logging.CRITICAL,  # a traceback when the file is locked; StoreError explains it
    "httpx": logging.WARNING,
    "sentence_transformers": logging.ERROR,
    "transformers": logging.ERROR,
}


@dataclass(frozen=True)
class Console:
    """Where a command's own output goes: results on ``out``, progress and errors on ``err``. ``log`` is
    the file that took everything else (library warnings, engine logs), None when nothing was diverted."""

    out: TextIO
    err: TextIO
    log: Path | None = None


def divert_output(log_file: Path) -> Console:
    """Point file descriptors 1 and 2 at ``log_file`` for the rest of the process; return a Console on the
    original ones. Descriptors, not ``sys.stderr``: Triton and torch's C++ warnings (NUMA binding), vLLM's
    EngineCore subprocess and Ray's workers write to the inherited descriptors directly."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return Console(out, err, log_file)


def configure_logging(verbose: bool = False, log_file: Path | None = None) -> Console:
    """Call before the first import of transformers / vLLM: some settings are read at import time.

    With ``log_file`` and not ``verbose``, every line that is not the caller's own output goes to that file
    (at INFO, engine logs included) and the returned Console writes to the terminal. Without it, library
    logs go to stderr: INFO with ``verbose``, otherwise warnings and errors only."""
    console = Console(sys.stdout, sys.stderr)
    if log_file is not None and not verbose:
        try:
            console = divert_output(log_file)
        except OSError as err:  # e.g. a read-only data dir: keep the terminal, say why once
            print(f"warning: cannot write the log file {log_file}: {err}", file=sys.stderr)
    detailed = verbose or console.log is not None
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if detailed else "ERROR")
    os.environ["VLLM_LOGGING_STREAM"] = "ext://sys.stderr"  # stdout carries results (--json)
    if not detailed:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        warnings.filterwarnings("ignore", category=FutureWarning)
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.INFO if detailed else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("ragserve").setLevel(logging.INFO if detailed else logging.WARNING)
    # pymilvus applies its own logging config on import: import it first, then set levels.
    import pymilvus  # noqa: F401

    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else level)
    return console
