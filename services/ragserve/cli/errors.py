"""Exit codes of ``ragserve`` and the one place that turns an exception into one.

0 ok; 1 partial (some files could not be ingested); 2 bad input or config; 3 a dependency (Milvus, a model
that cannot be loaded, the server behind ``--url``) failed; 70 an unexpected error (a bug); 75 busy (retry
later); 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

from ragserve.observability.logging import Console

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_DEPENDENCY = 0, 1, 2, 3
EXIT_SOFTWARE = 70  # sysexits.h EX_SOFTWARE: a crash must not read as "some files skipped" (1)
EXIT_BUSY = 75  # sysexits.h EX_TEMPFAIL: the collection's ingest lease is held, or the server says 429
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the command explains in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


class ModelLoadError(RuntimeError):
    """A configured model cannot be loaded (not installed, not in the cache, offline)."""


def _is_store_error(err: BaseException) -> bool:
    # Looked up, not imported: a command that never opened Milvus (``--url``) must not import pymilvus.
    milvus = sys.modules.get("ragserve.store.connection")
    return milvus is not None and isinstance(err, milvus.StoreError)


def run_reporting(command: str, run: Callable[[], int], con: Console) -> int:
    """Run a command; an exception becomes one line on ``con.err`` and its exit code. An unexpected one's
    traceback goes to the log file when output is diverted, else to the terminal."""
    try:
        return int(run())
    except CliError as err:
        print(f"error: {err}", file=con.err)
        return err.code
    except ModelLoadError as err:
        print(f"error: {err}", file=con.err)
        return EXIT_DEPENDENCY
    except ValueError as err:
        print(f"error: {err}", file=con.err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=con.err)
        return EXIT_INTERRUPTED
    except Exception as err:
        if _is_store_error(err):
            print(f"error: Milvus: {err}", file=con.err)
            return EXIT_DEPENDENCY
        if con.log is None:  # nothing diverted: the traceback on the terminal
            traceback.print_exc(file=con.err)
            return EXIT_SOFTWARE
        logging.getLogger("ragserve.cli").exception("%s failed", command)  # the traceback: in the log
        print(f"error: {type(err).__name__}: {err} (traceback in {con.log})", file=con.err)
        return EXIT_SOFTWARE
