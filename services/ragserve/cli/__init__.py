"""``ragserve`` command: ingest, search, query, eval, serve, serve-config, stats, config.

Layout (imports point down only): ``dispatch`` (main: parse, then a local command or ``remote``) ->
``commands`` / ``evaluation`` / ``local_ray`` (``serve``) / ``remote`` (``--url``) -> ``wiring`` (store,
encoder, generator in this process) / ``output`` -> ``errors`` (exit codes); ``parser`` stands alone.
Nothing heavy (torch, sentence-transformers, vLLM, Ray, pymilvus) is imported at module level: each
command imports what it uses, and ``--url`` imports none of it.
"""

from __future__ import annotations

from ragserve.cli.dispatch import main
from ragserve.cli.errors import (
    EXIT_BUSY,
    EXIT_DEPENDENCY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SOFTWARE,
    EXIT_USAGE,
    CliError,
    ModelLoadError,
)
from ragserve.cli.parser import build_parser
from ragserve.cli.wiring import access_of, groups_of, open_search, start_generator

__all__ = [
    "EXIT_BUSY",
    "EXIT_DEPENDENCY",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_SOFTWARE",
    "EXIT_USAGE",
    "CliError",
    "ModelLoadError",
    "access_of",
    "build_parser",
    "groups_of",
    "main",
    "open_search",
    "start_generator",
]
