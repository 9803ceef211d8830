"""`crocopipe ui RUN_DIR`: the Prefect UI over a finished run's own history.

Serves ``<run_dir>/prefect`` (the embedded server's database: flow runs, task runs, logs,
artifacts) with ``prefect server start`` on a free loopback port, with the UI's API URL set to
that port, until Ctrl-C. The command holds the run folder's lock: the server writes to the
database, so no run may write it at the same time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

import typer

from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_LOCKED

STARTUP_TIMEOUT_S = 600.0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_env(prefect_home: Path, host: str, port: int) -> dict[str, str]:
    """The environment of a server over ``prefect_home`` whose UI talks to its own API."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    api = f"http://{host}:{port}/api"
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


def wait_healthy(api: str, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def ui(
    run_dir: Path = typer.Argument(..., help="a run folder (holds prefect/ with the run's history)"),
    port: Optional[int] = typer.Option(None, help="port to serve on (default: a free one)"),
    host: str = typer.Option("127.0.0.1", help="address to serve on (default: loopback only)"),
) -> None:
    """Open a run's Prefect history (flow runs, task runs, logs, artifacts) in the Prefect UI."""
    from pipeline.run_lock import RunLock, RunLockedError
    from rendering.processes import tied_command
    from rendering.layout import RunLayout

    layout = RunLayout(run_dir)
    home = layout.prefect_home.resolve()
    if not any(home.glob("*.db")):
        typer.echo(f"error: {home} holds no Prefect database: run a command on {run_dir} first", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        lock = RunLock(layout.root, purpose="ui").acquire()
    except RunLockedError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_LOCKED) from None
    def stop(signum, frame):  # SIGTERM stops the server as Ctrl-C does: no orphaned server
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        port = port or free_port(host)
        api = f"http://{host}:{port}/api"
        log = open(home / "ui-server.log", "ab")
        process = subprocess.Popen(  # tied: the server dies with this command, even on SIGKILL
            tied_command([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port),
                          "--no-services"]),
            env=server_env(home, host, port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            typer.echo(f"starting the Prefect server over {home} (log: {home / 'ui-server.log'}) ...")
            if not wait_healthy(api, process, STARTUP_TIMEOUT_S):
                typer.echo(f"error: the Prefect server did not start; see {home / 'ui-server.log'}", err=True)
                raise typer.Exit(EXIT_FAILED)
            typer.echo(f"Prefect UI for {layout.root}: http://{host}:{port}  (API {api}; Ctrl-C stops it)")
            process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            log.close()
    finally:
        lock.release()
