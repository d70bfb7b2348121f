"""``search``, ``query`` and ``stats`` with ``--url``: the request goes to a running ``ragserve serve``
over the public HTTP API (stdlib only: nothing of the model or Milvus stack is imported) and the answer is
printed as the local command prints it. The server's errors become the CLI's exit codes, with its message.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

from ragserve.cli.errors import EXIT_BUSY, EXIT_DEPENDENCY, EXIT_OK, EXIT_USAGE, CliError
from ragserve.cli.output import print_answer, print_hits, print_json
from ragserve.cli.parser import API_KEY_ENV
from ragserve.observability.logging import Console

TIMEOUT_S = 600.0  # the server bounds a request itself (router.request_timeout_s, 504); this is a backstop
# Flags that choose this process's configuration or tenant: with --url the server's configuration and the
# key's principal decide, so giving one is a mistake worth saying.
LOCAL_ONLY = {
    "config": "--config",
    "profile": "--profile",
    "collection": "--collection",
    "tenant": "--tenant",
}


def check_args(args: argparse.Namespace) -> None:
    """``--api-key`` needs ``--url``; ``--url`` takes none of the local-only flags and must be http(s)."""
    if args.url is None:
        if args.api_key is not None:
            raise CliError("--api-key: only used with --url")
        return
    given = [flag for name, flag in LOCAL_ONLY.items() if getattr(args, name, None) is not None]
    if given:
        raise CliError(
            f"{given[0]}: not used with --url (the server's configuration and the API key's tenant apply)"
        )
    if not args.url.startswith(("http://", "https://")) or len(args.url.split("://", 1)[1]) == 0:
        raise CliError(f"--url: expected http://HOST:PORT or https://..., got {args.url!r}")


def exit_code(status: int) -> int:
    """429: busy, retry later (75); another 4xx: the request or the key is wrong (2); 5xx, the server or a
    backend behind it failed (3)."""
    if status == 429:
        return EXIT_BUSY
    return EXIT_USAGE if 400 <= status < 500 else EXIT_DEPENDENCY


def error_message(status: int, raw: bytes) -> str:
    """The API's ``{"error": {"message", "field"}}``, or the start of whatever else the server sent."""
    try:
        error = json.loads(raw)["error"]
        message, field = str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {raw.decode('utf-8', 'replace').strip()[:300] or '(no body)'}"
    if field and not message.startswith(str(field)):
        message = f"{field}: {message}"
    return f"HTTP {status}: {message}"


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request to ``args.url`` + ``path``; the decoded JSON body, or CliError with the exit code."""
    url = args.url.rstrip("/") + path
    headers = {"Accept": "application/json"}
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise CliError(f"{url}: {error_message(err.code, err.read())}", exit_code(err.code)) from None
    except (urllib.error.URLError, OSError) as err:  # refused, unknown host, timed out, reset
        reason = getattr(err, "reason", err)
        raise CliError(f"{url}: cannot reach the server: {reason}", EXIT_DEPENDENCY) from None
    except ValueError as err:  # a 200 whose body is not JSON: not a ragserve server
        raise CliError(f"{url}: the response is not JSON ({err})", EXIT_DEPENDENCY) from None


def run_remote(args: argparse.Namespace, con: Console) -> int:
    """``search`` / ``query`` / ``stats`` against ``args.url``."""
    if args.command == "search":
        body: dict[str, Any] = {"query": args.query, "top_k": args.top_k}
        if args.source:
            body["filter"] = {"sources": args.source}
        found = call(args, "POST", "/v1/search", body)
        if args.json:
            print_json(con, found)
        else:
            print_hits(con, found["hits"])
    elif args.command == "query":
        body = {"question": args.question, "top_k": args.top_k}
        if args.max_tokens:
            body["sampling"] = {"max_tokens": args.max_tokens}
        answer = call(args, "POST", "/v1/query", body)
        if args.json:
            print_json(con, answer)
        else:
            print_answer(con, answer)
    else:
        print_json(con, call(args, "GET", "/v1/collections/stats"))
    return EXIT_OK
