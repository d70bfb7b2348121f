"""``main``: parse the command line, then run the command here (configuration, environment, the parts it
opens) or, with ``--url``, on a running server; every failure leaves through ``errors.run_reporting``."""

from __future__ import annotations

import importlib
import sys

from ragserve.cli.errors import EXIT_USAGE, CliError, run_reporting
from ragserve.cli.parser import build_parser
from ragserve.cli.remote import check_args, run_remote
from ragserve.cli.wiring import prepare_environment
from ragserve.observability.logging import Console

# command -> (module, function): imported when the command runs, so `--url` loads none of them
HANDLERS = {
    "ingest": ("ragserve.cli.commands", "cmd_ingest"),
    "search": ("ragserve.cli.commands", "cmd_search"),
    "query": ("ragserve.cli.commands", "cmd_query"),
    "stats": ("ragserve.cli.commands", "cmd_stats"),
    "config": ("ragserve.cli.commands", "cmd_config"),
    "serve-config": ("ragserve.cli.commands", "cmd_serve_config"),
    "eval": ("ragserve.cli.evaluation", "cmd_eval"),
    "serve": ("ragserve.cli.local_ray", "cmd_serve"),
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "url"):
        try:
            check_args(args)
        except CliError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.code
        if args.url is not None:  # no configuration, no log diversion: nothing here loads a library
            con = Console(sys.stdout, sys.stderr)
            return run_reporting(args.command, lambda: run_remote(args, con), con)
    from ragserve.config import ConfigError, load_config

    try:
        overrides = {"store": {"collection": args.collection}} if args.collection else None
        cfg = load_config(args.config, profile=args.profile, overrides=overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    con = prepare_environment(cfg, args)
    module, name = HANDLERS[args.command]
    handler = getattr(importlib.import_module(module), name)
    return run_reporting(args.command, lambda: handler(cfg, args, con), con)
