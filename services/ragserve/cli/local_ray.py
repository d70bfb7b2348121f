"""``ragserve serve``: a local Ray started for the Serve application (``environment.start_local_ray``), run
until Ctrl-C / SIGTERM, then stopped with everything it started."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from ragserve.cli.errors import EXIT_INTERRUPTED, EXIT_OK
from ragserve.observability.logging import Console

if TYPE_CHECKING:
    from ragserve.config import AppConfig

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 30  # Serve's orderly shutdown before Ray's processes are stopped


def cmd_serve(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    """Run the Serve application on a local Ray instance and block until Ctrl-C / SIGTERM."""
    import signal
    import threading

    import ray
    from ray import serve

    from ragserve.app import APP_NAME, build_app_from_config, serve_tracing_config
    from ragserve.environment import start_local_ray

    host = args.host or cfg.router.host
    port = args.port or cfg.router.port
    start_local_ray(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=args.verbose,
        _metrics_export_port=args.metrics_port,  # None: Ray picks one; GET /metrics shows it either way
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: leave now, without the orderly shutdown
            raise SystemExit(EXIT_INTERRUPTED)
        print("stopping ragserve (Ctrl-C again to force)", file=con.err, flush=True)
        stop.set()

    # Our own handlers, installed after Ray started: SIGINT may arrive ignored (a parent that started us in
    # the background) or be taken over by a library; either way Ctrl-C must stop the server.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        serve.start(
            http_options={"host": host, "port": port, "request_timeout_s": cfg.router.request_timeout_s},
            tracing_config=serve_tracing_config(cfg),
        )
        serve.run(build_app_from_config(cfg), name=APP_NAME, route_prefix=cfg.router.route_prefix)
        url = f"http://{host}:{port}{cfg.router.route_prefix.rstrip('/')}"
        print(f"ragserve is serving on {url} (Ctrl-C stops)", file=con.out, flush=True)
        if cfg.router.ui:
            print(f"playground: open {url}/ui in a browser (docs/ui.md)", file=con.out, flush=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        # Bounded: with the cluster already gone (its processes got the terminal's SIGINT too) Serve's
        # shutdown would wait for a controller that is not there.
        closer = threading.Thread(target=serve.shutdown, daemon=True)
        closer.start()
        closer.join(SHUTDOWN_TIMEOUT_S)
        ray.shutdown()  # stops the raylet, GCS and workers this ray.init started
    return EXIT_OK
