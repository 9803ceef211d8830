"""The embedded Prefect server of one command, and the truth about runs a killed command left.

:class:`TiedServer` is Prefect's ephemeral server application started through rendering.processes,
so it dies with the command even when the command is SIGKILLed (Prefect's own stop runs only at a
normal interpreter exit). :func:`mark_crashed_runs` fixes the history a killed command leaves: its flow
and task runs stay "Running" in the run's database forever; the next command of the same run
folder (which holds the run lock, so no other command of that folder can be running) marks them
Crashed. Flow runs are recognised by the run-folder tag every command puts on its flow runs.
Import only after pipeline.prefect_env.configure_prefect.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from uuid import UUID

from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, Settings, get_current_settings

from pipeline.early_server import ServerChild, adopt_early, launch_server, server_environment, stop_server
from pipeline.prefect_template import save_template

RUN_FOLDER_TAG = "crocopipe-run:"
UNFINISHED = ("RUNNING", "PENDING")
_SWEPT: set[str] = set()  # run folders already swept by this process (sweep once, before any flow)
_STARTUP_FAILURE = 3  # uvicorn's exit status when it cannot start (e.g. the port was taken meanwhile)


class ServerStartError(RuntimeError):
    """The embedded Prefect server did not answer its health check."""


class TiedServer:
    """Prefect's API server application (uvicorn with Prefect's app factory, UI off, ephemeral
    mode: what Prefect's own ephemeral server runs) as a child that dies with this process, and
    stops when the command's block ends or with the command's other children.

    The application is imported in the child only: this process never loads Prefect's server
    code (seconds of CPU that used to delay every command that runs a flow)."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self, adopt: bool = False) -> ServerChild:
        """The server child: the one pipeline.early_server launched ahead when ``adopt`` and it
        fits the current settings, else a new one."""
        settings = get_current_settings().to_environment_variables(exclude_unset=True)
        launched = adopt_early(settings == Settings().to_environment_variables(exclude_unset=True)) if adopt else None
        child = launched or launch_server(server_environment(settings))
        self.process, self.port = child.process, child.port
        return child

    def _healthy(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        try:
            with opener.open(f"{self.api_url}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start(self, timeout: float | None = None) -> None:
        """Start the server and wait until it answers (Prefect's startup timeout by default)."""
        if self.process is not None:
            return
        # the environment's value first: configure_prefect sets it, and a Prefect imported before
        # that (a test process) still holds its own default
        limit = float(timeout or os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
                      or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        deadline = time.monotonic() + limit
        child = self._launch(adopt=True)
        atexit.register(self.stop)
        try:
            while not self._healthy():
                status = self.process.poll()
                if status == _STARTUP_FAILURE:  # lost the port to another process: another one
                    child = self._launch()
                elif status is not None:
                    raise ServerStartError(f"the embedded Prefect server exited with status {status} while "
                                           f"starting (its log: {os.environ.get('PREFECT_HOME', '~/.prefect')}/prefect.log)")
                elif time.monotonic() > deadline:
                    raise ServerStartError(f"the embedded Prefect server did not answer within {limit:.0f} s "
                                           "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        if child.creates_database is not None:  # migrated, no run recorded yet: the next new folder's start
            save_template(child.creates_database)

    def stop(self) -> None:
        """Terminate the server (its shutdown saves what it holds); kill it after 5 s."""
        process, self.process = self.process, None
        if process is not None:
            stop_server(process)


def run_folder_tag(run_dir: Path) -> str:
    """The tag on every flow run of a run folder (absolute path, so a shared server tells them apart)."""
    return RUN_FOLDER_TAG + str(Path(run_dir).resolve())


def _current_flow_runs(client) -> set[UUID]:
    """This process's own running flow run and its parents (never to be marked crashed)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    ids: set[UUID] = set()
    run = context.flow_run if context is not None else None
    while run is not None:
        ids.add(run.id)
        parent_task = run.parent_task_run_id
        run = client.read_flow_run(client.read_task_run(parent_task).flow_run_id) if parent_task else None
    return ids


def mark_crashed_runs(run_dir: Path) -> int:
    """Mark Crashed every unfinished flow run of ``run_dir`` that belongs to no live command, and
    every unfinished task run of the folder's other flow runs (also of those already final: a
    command stopped by a signal may record its flow run as Crashed while its task runs are left
    Running). Call with the run lock held. Returns the flow runs marked."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
        TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    key = str(Path(run_dir).resolve())
    if key in _SWEPT:
        return 0
    _SWEPT.add(key)
    unfinished = [StateType(s) for s in UNFINISHED]
    message = f"the command running it was killed; marked by the next command on {key} (pid {os.getpid()})"
    tags = FlowRunFilterTags(all_=[run_folder_tag(run_dir)])
    with get_client(sync_client=True) as client:
        own = list(_current_flow_runs(client))
        others = FlowRunFilter(tags=tags, id=FlowRunFilterId(not_any_=own) if own else None)
        unfinished_tasks = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished)))
        marked_tasks: set[UUID] = set()
        while batch := [t for t in client.read_task_runs(flow_run_filter=others, task_run_filter=unfinished_tasks,
                                                         limit=200) if t.id not in marked_tasks]:
            for task_run in batch:
                client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
                marked_tasks.add(task_run.id)
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=tags, id=others.id, state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished))))
        for run in runs:
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    return len(runs)
