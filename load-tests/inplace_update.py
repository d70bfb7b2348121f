"""Proof: a scaling knob changed in the Serve config's ``deployments:`` block is an in-place update.

Claim. Changing only the Generator's ``autoscaling_config.max_replicas`` in the ``deployments:`` entry of
the Serve config (what KubeRay's serveConfigV2 carries) and re-deploying it keeps the Generator replica's
actor (same actor id) and puts the new bound in effect. The contrast: the same kind of change carried in
the application's ``args``. Serve hashes ``args`` into the application's code version
(``ray/serve/_private/deploy_utils.py`` ``get_app_code_version``), so any change there rebuilds the app and
replaces every replica of every deployment.

How. The script deploys the way an operator (or KubeRay) does: a fresh temporary ``RAGSERVE_HOME`` (Milvus
Lite file, generated tiny Llama), a local Ray head with a dashboard (``ray start --head``), the YAML of
``ragserve serve-config`` sent with ``serve deploy FILE --address http://127.0.0.1:PORT`` (the REST path),
``serve status`` until the app is RUNNING. For each mode it edits the deployed YAML, re-deploys it, waits
until the app is RUNNING again with a settled replica set, and compares the replicas' actor ids (from the
dashboard's ``/api/serve/applications/`` details, cross-checked with the state API's ``list_actors``) and
the ``max_replicas`` Serve reports in each deployment's effective ``deployment_config``.

  mode ``deployments``: ``deployments[Generator].autoscaling_config.max_replicas`` += 1, args untouched.
  mode ``args``: ``args.generator.deployment[.autoscaling_config].max_replicas`` set above the bound in
  effect when the args still carry deployment options (the ``deployments:`` entry, which overrides the
  code's options, is left as it is), else an innocuous arg (``args.prompt.top_k`` += 1).
  mode ``options`` (extra, not part of ``both``): the Generator's other Serve options in ``deployments:``,
  ``max_ongoing_requests`` += 1, ``max_queued_requests`` -1 -> 50, ``backpressure_config.retry_after_s`` += 1.

"Seconds to RUNNING" counts from the start of the deploy call to the first of two consecutive settled
polls (the polls are ~2-3 s apart, so an in-place update shows as a few seconds).

If the dashboard / ``serve deploy`` cannot work, it falls back to the controller's declarative API
(``ServeControllerClient.deploy_apps`` with a ``ServeDeploySchema``, what the dashboard calls) and says so.

Run (about 3 min on 2 CPU cores, most of it two vLLM starts of ~60 s)::

    .venv/bin/python load-tests/inplace_update.py [--mode deployments|args|both|options] [--keep]
                                                  [--config FILE] [--out FILE]

It prints a table per mode and writes load-tests/results/inplace_update.json. Unless ``--keep``, the Ray
cluster it started is always stopped and the temporary home removed. It is stopped by pid (its daemons,
which name its temp dir, and their descendants), not with ``ray stop``, which kills every Ray process on
the machine by name: another Ray running here (a colleague's pytest session) is left alone, and this
cluster uses its own free ports and temp dir so the two do not meet. To test a clean commit
while the working tree is mid-edit, put its sources first on the path (workers inherit the environment of
``ray start``)::

    git archive HEAD | tar -x -C /tmp/ragserve-head
    PYTHONPATH=/tmp/ragserve-head/services .venv/bin/python load-tests/inplace_update.py
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from harness import RESULTS, free_port

BIN = Path(sys.executable).parent
APP = "ragserve"
GENERATOR = "Generator"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(
    cmd: list[str], env: dict[str, str], timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def foreign_ray_processes(own_dir: Path | None = None) -> list[str]:
    """Ray daemons on this machine that this script did not start (``ray stop`` would stop them too)."""
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            name = p.info["name"] or ""
            cmdline = " ".join(p.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if name in ("raylet", "gcs_server") and not (own_dir and str(own_dir) in cmdline):
            found.append(f"{p.info['pid']} {name}")
    return found


# ---- cluster and deploy paths -----------------------------------------------------------------------------
def private_env(home: Path) -> dict[str, str]:
    """The environment of a private cluster whose RAGSERVE_HOME and Ray temp dir are under ``home``.

    Token auth with this run's own token: Ray 2.60 turns token auth on for a cluster when ~/.ray/auth_token
    exists (any local ray.init() creates it), and its clients then need that token. A token file of our own
    keeps the cluster authenticated and independent of whatever ~/.ray holds. This process gets the same
    auth settings (the state API, the controller fallback)."""
    token_path = home / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    from ragserve.environment import ray_node_env

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(
        ray_node_env(),  # as the chart's pods
        RAGSERVE_HOME=str(home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
    )
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path))
    return env


@dataclass
class Cluster:
    home: Path
    env: dict[str, str]
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, num_cpus: int) -> None:
        cmd = [
            str(BIN / "ray"),
            "start",
            "--head",
            f"--num-cpus={num_cpus}",
            f"--port={self.gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={self.home / 'ray'}",
            "--disable-usage-stats",
        ]
        log(f"starting Ray: {' '.join(cmd[1:])}")
        run(cmd, self.env, timeout=180)

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: the daemons, whose command lines name its temp dir, and their
        descendants (workers, Serve actors, agents). Never another Ray's."""
        me = os.getpid()
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if p.pid != me and str(self.home) in " ".join(p.info["cmdline"] or []):
                    found[p.pid] = p
                    for child in p.children(recursive=True):
                        found[child.pid] = child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return list(found.values())

    def stop(self) -> None:
        """Stop this cluster by pid. Not ``ray stop``: that kills every Ray process on the machine by name,
        a colleague's test session included."""
        procs = self.processes()
        log(f"stopping this Ray cluster: {len(procs)} processes, by pid (SIGTERM, then SIGKILL after 20 s)")
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=20)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=10)
        left = self.processes()
        log(f"left running: {[p.pid for p in left]}" if left else "no process of this cluster left")


class RestPath:
    """What an operator / KubeRay uses: ``serve deploy`` and ``serve status`` against the dashboard."""

    name = "serve deploy / serve status via the dashboard REST API"

    def __init__(self, cluster: Cluster):
        self.cluster = cluster

    def ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.details()
                return True
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(2)
        return False

    def deploy(self, doc: dict[str, Any]) -> None:
        path = self.cluster.home / f"serve-config-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        cmd = [str(BIN / "serve"), "deploy", str(path), "--address", self.cluster.dashboard]
        run(cmd, self.cluster.env, timeout=180)

    def app_status(self) -> str:
        cmd = [str(BIN / "serve"), "status", "--address", self.cluster.dashboard, "--name", APP]
        proc = run(cmd, self.cluster.env, timeout=60, check=False)
        if proc.returncode != 0:
            return "UNKNOWN"
        data = yaml.safe_load(proc.stdout) or {}
        if "applications" in data:  # without --name (or older Serve): every application
            data = data["applications"].get(APP) or {}
        return str(data.get("status", "NOT_STARTED"))

    def details(self) -> dict[str, Any]:
        url = f"{self.cluster.dashboard}/api/serve/applications/"
        token = Path(self.cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data


class ControllerPath:
    """Fallback: the controller's declarative API, what the dashboard's PUT handler calls."""

    name = "controller API (ServeControllerClient.deploy_apps + ServeDeploySchema), dashboard not used"

    def __init__(self, cluster: Cluster):
        import ray

        os.environ.update(
            {k: v for k, v in cluster.env.items() if k.startswith(("RAGSERVE", "HF_", "TRANS"))}
        )
        ray.init(address=f"127.0.0.1:{cluster.gcs_port}", log_to_driver=False)
        self.client: Any = None

    def deploy(self, doc: dict[str, Any]) -> None:
        from ray.serve._private.api import serve_start
        from ray.serve.schema import ServeDeploySchema

        config = ServeDeploySchema.model_validate(doc)
        if self.client is None:
            self.client = serve_start(http_options=config.http_options.model_dump())
        self.client.deploy_apps(config)

    def app_status(self) -> str:
        app = (self.details().get("applications") or {}).get(APP) or {}
        return str(app.get("status", "NOT_STARTED"))

    def details(self) -> dict[str, Any]:
        if self.client is None:
            return {"applications": {}}
        return dict(self.client.get_serve_details())


DeployPath = RestPath | ControllerPath


# ---- snapshots --------------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    app_status: str
    last_deployed_time_s: float
    deployments: dict[str, dict[str, Any]]

    def actor_ids(self, name: str) -> list[str]:
        return sorted(r["actor_id"] for r in self.deployments.get(name, {}).get("replicas", []))

    def serve_options(self, name: str) -> dict[str, Any]:
        d = self.deployments.get(name, {})
        keys = ("max_ongoing_requests", "max_queued_requests", "backpressure_config")
        return {k: d.get(k) for k in keys}

    def pids(self, name: str) -> list[int]:
        return sorted(r["pid"] for r in self.deployments.get(name, {}).get("replicas", []) if r["pid"])

    def bound(self, name: str) -> str:
        """max_replicas for the table; ``fixed N`` for a deployment without autoscaling."""
        value = self.max_replicas(name)
        if value is None:
            return f"fixed {self.deployments.get(name, {}).get('num_replicas')}"
        return str(value)

    def max_replicas(self, name: str) -> int | None:
        auto = self.deployments.get(name, {}).get("autoscaling_config") or {}
        value = auto.get("max_replicas")
        return int(value) if value is not None else None

    def settled(self) -> bool:
        if self.app_status != "RUNNING" or not self.deployments:
            return False
        return all(
            d["status"] == "HEALTHY"
            and all(r["state"] == "RUNNING" for r in d["replicas"])
            and len(d["replicas"]) == d["target_num_replicas"]
            for d in self.deployments.values()
        )


def snapshot(path: DeployPath, app_status: str | None = None) -> Snapshot:
    app = (path.details().get("applications") or {}).get(APP) or {}
    deployments = {}
    for name, d in (app.get("deployments") or {}).items():
        cfg = d.get("deployment_config") or {}
        deployments[name] = {
            "status": d.get("status"),
            "target_num_replicas": d.get("target_num_replicas"),
            "autoscaling_config": cfg.get("autoscaling_config"),
            "num_replicas": cfg.get("num_replicas"),
            "max_ongoing_requests": cfg.get("max_ongoing_requests"),
            "max_queued_requests": cfg.get("max_queued_requests"),
            "backpressure_config": cfg.get("backpressure_config"),
            "replicas": [
                {
                    "actor_id": r.get("actor_id"),
                    "replica_id": r.get("replica_id"),
                    "state": r.get("state"),
                    "pid": r.get("pid"),
                    "start_time_s": r.get("start_time_s"),
                }
                for r in d.get("replicas") or []
            ],
        }
    status = app_status if app_status is not None else str(app.get("status", "NOT_STARTED"))
    return Snapshot(status, float(app.get("last_deployed_time_s") or 0.0), deployments)


def state_api_actor_ids(cluster: Cluster) -> dict[str, list[str]]:
    """ALIVE ServeReplica actors per deployment, from Ray's state API (independent of Serve's view)."""
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard, filters=[("state", "=", "ALIVE")], limit=1000)
    out: dict[str, list[str]] = {}
    for a in actors:
        cls = str(a.class_name or "")
        if cls.startswith(f"ServeReplica:{APP}:"):
            out.setdefault(cls.rsplit(":", 1)[1], []).append(str(a.actor_id))
    return {k: sorted(v) for k, v in sorted(out.items())}


def wait_settled(
    path: DeployPath, after: float, start: float, timeout: float, label: str
) -> tuple[Snapshot, float]:
    """Until the app took a deploy newer than ``after`` and is RUNNING with every replica RUNNING, twice in
    a row with the same replicas. Returns the snapshot and the seconds from ``start`` (a monotonic time,
    when the deploy began) to the first of those two polls."""
    deadline = time.monotonic() + timeout
    previous: Snapshot | None = None
    first_ok = 0.0
    last_status = ""
    while time.monotonic() < deadline:
        polled_at = time.monotonic() - start
        try:
            snap = snapshot(path, path.app_status())
        except (OSError, urllib.error.URLError, ValueError, RuntimeError) as err:
            log(f"{label}: status not available yet ({type(err).__name__})")
            time.sleep(3)
            continue
        if snap.app_status == "DEPLOY_FAILED":
            raise RuntimeError(f"{label}: app is {snap.app_status}: {json.dumps(path.details())[:3000]}")
        ok = snap.last_deployed_time_s > after and snap.settled()
        if snap.app_status != last_status:
            log(f"{label}: app {snap.app_status} after {polled_at:.1f} s")
            last_status = snap.app_status
        if (
            ok
            and previous is not None
            and all(snap.actor_ids(n) == previous.actor_ids(n) for n in snap.deployments)
        ):
            return snap, first_ok
        if ok:
            previous, first_ok = snap, polled_at
        else:
            previous = None
        time.sleep(2)
    raise TimeoutError(f"{label}: app not RUNNING and settled within {timeout:.0f} s (last: {last_status})")


# ---- the config edits -------------------------------------------------------------------------------------
def app_entry(doc: dict[str, Any]) -> dict[str, Any]:
    for app in doc["applications"]:
        if app["name"] == APP:
            return app  # the document's own dict: edits go into it
    raise KeyError(APP)


def generator_entry(app: dict[str, Any]) -> dict[str, Any]:
    for entry in app.get("deployments") or []:
        if entry.get("name") == GENERATOR:
            return entry  # the document's own dict: edits go into it
    entry = {"name": GENERATOR}
    app.setdefault("deployments", []).append(entry)
    return entry


def args_deployment_block(args: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """Where, if anywhere, ``args`` still carry the Generator's max_replicas (old or Serve-named shape)."""
    dep = (args.get("generator") or {}).get("deployment")
    if not isinstance(dep, dict):
        return None
    if isinstance(dep.get("autoscaling_config"), dict) and "max_replicas" in dep["autoscaling_config"]:
        return dep["autoscaling_config"], "args.generator.deployment.autoscaling_config.max_replicas"
    if "max_replicas" in dep:
        return dep, "args.generator.deployment.max_replicas"
    return None


def edit(doc: dict[str, Any], mode: str, in_effect: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of ``doc`` with the mode's change, and a description of the change."""
    new = copy.deepcopy(doc)
    app = app_entry(new)
    if mode == "deployments":
        auto = generator_entry(app).setdefault("autoscaling_config", {})
        old = int(auto.get("max_replicas", in_effect))
        auto["max_replicas"] = old + 1
        where = f"deployments[{GENERATOR}].autoscaling_config.max_replicas"
        return new, {"key": where, "old": old, "new": old + 1, "expected_max_replicas": old + 1}
    if mode == "options":
        entry = generator_entry(app)
        old_opts = {
            "max_ongoing_requests": entry.get("max_ongoing_requests", 8),
            "max_queued_requests": entry.get("max_queued_requests", -1),
            "backpressure_config.retry_after_s": (entry.get("backpressure_config") or {}).get(
                "retry_after_s", 1.0
            ),
        }
        entry["max_ongoing_requests"] = old_opts["max_ongoing_requests"] + 1
        queued = old_opts["max_queued_requests"]
        entry["max_queued_requests"] = 50 if queued == -1 else queued + 1
        entry.setdefault("backpressure_config", {})["retry_after_s"] = (
            old_opts["backpressure_config.retry_after_s"] + 1
        )
        new_opts = {
            "max_ongoing_requests": entry["max_ongoing_requests"],
            "max_queued_requests": entry["max_queued_requests"],
            "backpressure_config.retry_after_s": entry["backpressure_config"]["retry_after_s"],
        }
        where = f"deployments[{GENERATOR}].{{max_ongoing_requests,max_queued_requests,backpressure_config}}"
        return new, {"key": where, "old": old_opts, "new": new_opts, "expected_serve_options": new_opts}
    args = app.setdefault("args", {})
    found = args_deployment_block(args)
    if found is not None:
        block, where = found
        old = int(block["max_replicas"])
        block["max_replicas"] = max(old, in_effect) + 1
        pinned = (generator_entry(app).get("autoscaling_config") or {}).get("max_replicas")
        note = (
            f"deployments[{GENERATOR}].autoscaling_config.max_replicas (left at {pinned}) overrides "
            "the code's options, so the bound in effect should stay"
            if pinned is not None
            else ""
        )
        return new, {"key": where, "old": old, "new": block["max_replicas"], "note": note}
    prompt = args.setdefault("prompt", {})
    old = int(prompt.get("top_k", 5))
    prompt["top_k"] = old + 1
    return new, {
        "key": "args.prompt.top_k",
        "old": old,
        "new": old + 1,
        "note": "args carry no deployment options, so an innocuous arg was changed",
    }


# ---- one mode ---------------------------------------------------------------------------------------------
def run_mode(
    mode: str, path: DeployPath, cluster: Cluster, doc: dict[str, Any], timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    before = snapshot(path)
    ids_before = state_api_actor_ids(cluster)
    in_effect = before.max_replicas(GENERATOR) or 1
    new_doc, change = edit(doc, mode, in_effect)
    log(f"mode {mode}: {change['key']} {change['old']} -> {change['new']}; re-deploying")
    t0 = time.monotonic()
    path.deploy(new_doc)
    deploy_s = time.monotonic() - t0
    after, first_ok = wait_settled(path, before.last_deployed_time_s, t0, timeout, f"mode {mode}")
    ids_after = state_api_actor_ids(cluster)
    names = sorted(set(before.deployments) | set(after.deployments), key=lambda n: (n != GENERATOR, n))
    rows = []
    for name in names:
        b, a = before.actor_ids(name), after.actor_ids(name)
        rows.append(
            {
                "deployment": name,
                "actor_ids_before": b,
                "actor_ids_after": a,
                "restarted": b != a,
                "actors_kept": len(set(b) & set(a)),
                "max_replicas_before": before.max_replicas(name),
                "max_replicas_after": after.max_replicas(name),
                "bound_before": before.bound(name),
                "bound_after": after.bound(name),
                "pids_before": before.pids(name),
                "pids_after": after.pids(name),
                "state_api_agrees": ids_before.get(name, []) == b and ids_after.get(name, []) == a,
            }
        )
    gen = next(r for r in rows if r["deployment"] == GENERATOR)
    expected = change.get("expected_max_replicas")
    options_after = after.serve_options(GENERATOR)
    wanted = change.get("expected_serve_options")
    options_in_effect = None
    if wanted is not None:
        reported = {
            "max_ongoing_requests": options_after["max_ongoing_requests"],
            "max_queued_requests": options_after["max_queued_requests"],
            "backpressure_config.retry_after_s": (options_after["backpressure_config"] or {}).get(
                "retry_after_s"
            ),
        }
        options_in_effect = reported == wanted
    result = {
        "mode": mode,
        "change": change,
        "deploy_path": path.name,
        "serve_deploy_s": round(deploy_s, 2),
        "seconds_to_running": round(first_ok, 1),
        "generator_kept_actor": not gen["restarted"],
        "generator_max_replicas_in_effect": gen["max_replicas_after"],
        "new_bound_in_effect": None if expected is None else gen["max_replicas_after"] == expected,
        "new_serve_options_in_effect": options_in_effect,
        "deployments": rows,
        "generator_serve_options_before": before.serve_options(GENERATOR),
        "generator_serve_options_after": options_after,
        "generator_autoscaling_config_after": after.deployments.get(GENERATOR, {}).get("autoscaling_config"),
    }
    return result, new_doc


def print_table(res: dict[str, Any]) -> None:
    c = res["change"]
    print(f"\n== mode: {res['mode']} ==")
    print(f"change : {c['key']}: {c['old']} -> {c['new']}")
    if c.get("note"):
        print(f"note   : {c['note']}")
    print(f"path   : {res['deploy_path']}")
    print(
        f"timing : deploy call returned in {res['serve_deploy_s']} s; RUNNING again "
        f"{res['seconds_to_running']} s after it began"
    )
    widths = (11, 33, 33, 9, 17, 9)
    cells = [("deployment", "actor ids before", "actor ids after", "restarted", "max_replicas", "state API")]
    for r in res["deployments"]:
        cells.append(
            (
                r["deployment"],
                ",".join(r["actor_ids_before"]) or "-",
                ",".join(r["actor_ids_after"]) or "-",
                "yes" if r["restarted"] else "no",
                f"{r['bound_before']} -> {r['bound_after']}",
                "agrees" if r["state_api_agrees"] else "DIFFERS",
            )
        )
    for i, row in enumerate(cells):
        print(" ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("-" * (sum(widths) + len(widths) - 1))
    verdict = f"Generator kept its actor: {'yes' if res['generator_kept_actor'] else 'no'}"
    if res["new_bound_in_effect"] is not None:
        verdict += f"; new max_replicas in effect: {'yes' if res['new_bound_in_effect'] else 'no'}"
    if res["new_serve_options_in_effect"] is not None:
        verdict += f"; new Serve options in effect: {'yes' if res['new_serve_options_in_effect'] else 'no'}"
        print(f"Generator options as Serve reports them, after: {res['generator_serve_options_after']}")
    print(verdict)


# ---- main -------------------------------------------------------------------------------------------------
def serve_config(env: dict[str, str], config: str | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ragserve.cli", "serve-config", *(["--config", config] if config else [])]
    doc: dict[str, Any] = yaml.safe_load(run(cmd, env, timeout=120).stdout)
    return doc


def git_head() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=RESULTS.parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode",
        choices=["deployments", "args", "both", "options"],
        default="both",
        help="both: deployments, then args. options (extra, not in both): the Generator's "
        "max_ongoing_requests, max_queued_requests and backpressure_config.retry_after_s in deployments:",
    )
    parser.add_argument("--keep", action="store_true", help="leave Ray running (and its temporary home)")
    parser.add_argument("--config", help="ragserve config FILE passed to `ragserve serve-config`")
    parser.add_argument("--num-cpus", type=int, default=8, help="logical CPUs of the Ray head")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each deploy may take to RUNNING")
    parser.add_argument("--out", type=Path, default=RESULTS / "inplace_update.json")
    opts = parser.parse_args()
    modes = ["deployments", "args"] if opts.mode == "both" else [opts.mode]

    foreign = foreign_ray_processes()
    if foreign:
        log(f"another Ray runs here ({', '.join(foreign)}): left alone (own ports, temp dir, stop by pid)")
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="ragserve-inplace-"))
    cluster = Cluster(home, private_env(home))
    env = cluster.env
    import ragserve

    report: dict[str, Any] = {
        "claim": "a max_replicas change in the deployments: block is applied in place (same actor)",
        "ragserve_module": str(Path(ragserve.__file__).parent),
        "git_head": git_head(),
        "ray_version": run([str(BIN / "ray"), "--version"], env, timeout=60).stdout.strip(),
        "modes": [],
    }
    try:
        doc = serve_config(env, opts.config)
        doc["http_options"] = {"host": "127.0.0.1", "port": cluster.http_port}
        args_block = args_deployment_block(app_entry(doc).get("args") or {})
        report["args_carry_deployment_options"] = args_block is not None
        log(
            f"serve-config from {report['ragserve_module']}: args "
            f"{'carry' if args_block else 'carry no'} deployment options; home {home}"
        )
        cluster.start(opts.num_cpus)
        rest = RestPath(cluster)
        path: DeployPath = rest
        try:
            if not rest.ready(120):
                raise RuntimeError(f"dashboard {cluster.dashboard} not answering")
            t0 = time.monotonic()
            path.deploy(doc)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            log(f"REST path failed ({str(err)[:500]}); falling back to the controller API")
            path = ControllerPath(cluster)
            t0 = time.monotonic()
            path.deploy(doc)
        report["deploy_path"] = path.name
        _, first_ok = wait_settled(path, 0.0, t0, opts.timeout, "initial deploy")
        report["initial_seconds_to_running"] = round(first_ok, 1)
        log(f"initial deploy RUNNING after {first_ok:.1f} s")
        for mode in modes:
            result, doc = run_mode(mode, path, cluster, doc, opts.timeout)
            report["modes"].append(result)
            print_table(result)
    finally:
        report["total_s"] = round(time.monotonic() - started, 1)
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {opts.out} (total {report['total_s']} s)")
        if opts.keep:
            pids = sorted(p.pid for p in cluster.processes())
            log(f"--keep: Ray left running (dashboard {cluster.dashboard}), home {home}, pids {pids}")
        else:
            cluster.stop()
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
