"""A lease whose holder was killed on this host is taken over at once (store/lease.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ragserve.store.lease import holder_is_gone


def test_only_a_holder_process_gone_from_this_host_counts_as_gone() -> None:
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    host = socket.gethostname()
    assert holder_is_gone(f"ingest /docs on {host} pid {dead_pid.pid} [0123abcd]")
    assert not holder_is_gone(f"ingest /docs on {host} pid {os.getpid()} [0123abcd]")  # alive
    assert not holder_is_gone(
        f"ingest /docs on another-host pid {dead_pid.pid} [0123abcd]"
    )  # not ours to judge
    assert not holder_is_gone("something unexpected")
