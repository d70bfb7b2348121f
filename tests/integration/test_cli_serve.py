"""`ragserve serve` as a user runs it: `search`, `query` and `stats --url` answer from it; Ctrl-C (SIGINT to
the whole process group, as a terminal sends it) stops the server, its replicas and the local Ray processes
it started, within a bound.

It is started the way a script's `ragserve serve &` starts it: a non-interactive shell starts background jobs
with SIGINT ignored, which Python then never turns into KeyboardInterrupt. That is how SIGINT used to leave
the server running; `ragserve serve` now installs its own handler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NOTE = (
    "HNSW parameters: M is the maximum number of outgoing connections of a node in the graph, and "
    "efConstruction is the size of the candidate list while the index is built."
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args], capture_output=True, text=True, timeout=120
    )


def check_url_commands(url: str) -> None:
    """The CLI's --url path against the real server: a document added through the API is found by
    `search --url`, cited by `query --url`, counted by `stats --url`; a 422 is exit 2 with the field."""
    body = json.dumps({"documents": [{"source": "notes/hnsw.md", "text": NOTE}]}).encode()
    request = urllib.request.Request(
        f"{url}/v1/documents", body, {"Content-Type": "application/json"}, method="POST"
    )
    urllib.request.urlopen(request, timeout=120).close()
    found = cli("search", "What does M mean in HNSW?", "--url", url, "--json")
    assert found.returncode == 0, found.stderr
    assert [h["source"] for h in json.loads(found.stdout)["hits"]] == ["notes/hnsw.md"]
    lines = cli("search", "What does M mean in HNSW?", "--url", url).stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(" 1. ") and "notes/hnsw.md#0" in lines[0]
    answered = cli("query", "What does M mean in HNSW?", "--url", url, "--max-tokens", "8", "--json")
    assert answered.returncode == 0, answered.stderr
    answer = json.loads(answered.stdout)
    assert [s["source"] for s in answer["sources"]] == ["notes/hnsw.md"]
    assert answer["usage"]["completion_tokens"] > 0 and isinstance(answer["answer"], str)
    stats = cli("stats", "--url", url)
    assert stats.returncode == 0 and json.loads(stats.stdout)["documents"] == 1, stats.stdout
    refused = cli("search", "q", "--url", url, "--top-k", "100000")
    assert refused.returncode == 2 and "HTTP 422" in refused.stderr and "top_k" in refused.stderr


def test_ctrl_c_stops_the_server_and_everything_it_started(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragserve.cli", "serve", "--port", str(port)],
        env={**os.environ, "RAGSERVE_HOME": str(tmp_path / "home")},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a shell job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` in a script
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "ragserve is serving" not in (tmp_path / "serve.log").read_text():
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "ragserve serve did not start"
            time.sleep(1)
        check_url_commands(f"http://127.0.0.1:{port}")
        started = psutil.Process(proc.pid).children(recursive=True)
        assert any("raylet" in " ".join(p.cmdline()) for p in started if p.is_running())

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        sent = time.monotonic()
        proc.wait(timeout=STOP_TIMEOUT_S)
        gone, alive = psutil.wait_procs(started, timeout=max(1.0, STOP_TIMEOUT_S - (time.monotonic() - sent)))
        stopped_s = time.monotonic() - sent
        print(
            f"\nragserve serve: exit {proc.returncode} after SIGINT, {len(gone)} child processes gone in "
            f"{stopped_s:.1f} s"
        )
        assert not alive, [p.cmdline() for p in alive if p.is_running()]
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
