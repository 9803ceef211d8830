"""Launch the embedded Prefect server's process before this process imports Prefect.

The server child imports Prefect's server application, several seconds of CPU (8 s on a slow
2-core VM), and every command that runs a flow waited for it after its own imports and checks.
A command calls :func:`start_early` right after pipeline.prefect_env.configure_prefect, with the
run lock held, so the child starts while the command imports Prefect, checks its scenes and warms
its render processes; pipeline.flows.embedded_server.TiedServer then adopts the child instead of
launching one. Standard library only: importing this module must not import Prefect.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from pipeline.prefect_template import database_of, seed_database
from rendering.processes import tied_command

# what Prefect's own ephemeral server sets: no UI, ephemeral mode
SERVER_ENVIRONMENT = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
_EARLY: dict[str, object] = {}  # the launched child: "child", and "base", os.environ at its launch


class ServerChild(NamedTuple):
    """A launched server process, its port, and the database it creates (None: one was there or
    was copied from the template), to be saved as the template once the server answers."""

    process: subprocess.Popen
    port: int
    creates_database: Path | None


def set_server_defaults() -> None:
    """Defaults of the embedded server set in os.environ before it starts: the task-run recorder
    flushes every 5 s by default; 1 s shortens the wait for a complete history."""
    os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL", "1")


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The server child's environment: this process's, the given Prefect settings, ephemeral mode."""
    return {**os.environ, **settings, **SERVER_ENVIRONMENT}


def launch_server(environment: Mapping[str, str]) -> ServerChild:
    """uvicorn with Prefect's app factory on a free loopback port, dying with this process; a
    missing database of the embedded default starts as a copy of the template."""
    database = None
    if environment.get("PREFECT_HOME") and not environment.get("PREFECT_API_DATABASE_CONNECTION_URL"):
        database = database_of(environment["PREFECT_HOME"])
    creates = database if database is not None and seed_database(database) else None
    port = free_port()
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("prefect is not installed")
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent),
               "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    # Its own session: a terminal's Ctrl-C reaches the command's process group, and the server
    # must outlive that moment so that the command can still record how its runs ended.
    process = subprocess.Popen(tied_command(command), env=dict(environment), start_new_session=True)
    return ServerChild(process, port, creates)


def start_early() -> None:
    """Launch the embedded server now, unless a Prefect server is configured or one is launched."""
    if os.environ.get("PREFECT_API_URL") or _EARLY:
        return
    set_server_defaults()
    base = dict(os.environ)
    _EARLY.update(child=launch_server(server_environment({})), base=base)
    atexit.register(stop_early)


def adopt_early(settings_from_environment: bool) -> ServerChild | None:
    """The early child when it still runs and would be launched the same way now:
    os.environ is what it was at its launch and ``settings_from_environment`` (the caller's Prefect
    settings are those os.environ gives, no temporary setting in force). Else None, and an early
    child that does not fit is stopped."""
    if not _EARLY:
        return None
    child, base = _EARLY["child"], _EARLY["base"]
    _EARLY.clear()
    if settings_from_environment and base == dict(os.environ) and child.process.poll() is None:
        return child
    stop_server(child.process)
    return None


def stop_early() -> None:
    """Stop an early child nobody adopted (the command ended before it ran a flow)."""
    if _EARLY:
        child = _EARLY["child"]
        _EARLY.clear()
        stop_server(child.process)


def stop_server(process: subprocess.Popen) -> None:
    """Terminate a server child (its shutdown saves what it holds); kill it after 5 s."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
