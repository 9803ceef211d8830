"""Make a flow's task-run history durable before the process exits.

Prefect 3 clients report task-run states as *events* (a background EventsWorker sends them over a
websocket); the server's TaskRunRecorder service turns those events into task-run rows, in batches
flushed every few seconds. The embedded (ephemeral) server is a subprocess that is terminated at
interpreter exit with a 5 s grace period: a command that exits right after a large flow can lose
events still queued on the client, or received but not yet flushed by the recorder, so the last
task runs are missing from the Prefect database. The fix is to drain the client's event and log
workers and then wait until the API reports every task run of the flow run in a final state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from uuid import UUID


class TaskRunHistoryIncomplete(RuntimeError):
    """The Prefect API did not report every task run as final within the timeout."""


def drain_client_workers(timeout: float = 30.0) -> None:
    """Send every queued event and log record to the API now (blocking, bounded)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all(timeout=timeout, at_exit=False)
    APILogWorker.drain_all(timeout=timeout, at_exit=False)


def final_task_runs(flow_run_id: UUID) -> int:
    """How many task runs of ``flow_run_id`` the API has recorded in a final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    final, offset, page = 0, 0, 200  # the API returns at most its default limit per call
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flow_filter, limit=page, offset=offset)
            final += sum(1 for run in runs if run.state is not None and run.state.is_final())
            if len(runs) < page:
                return final
            offset += page


def wait_for_task_run_history(flow_run_id: UUID, expected: int, timeout: float = 60.0, poll: float = 0.25) -> int:
    """Block until ``expected`` task runs of the flow run are recorded as final; returns the count."""
    drain_client_workers()
    deadline = time.monotonic() + timeout
    count = final_task_runs(flow_run_id)
    while count < expected:
        if time.monotonic() > deadline:
            raise TaskRunHistoryIncomplete(
                f"after {timeout:.0f} s the Prefect API records {count} of {expected} task runs of flow run "
                f"{flow_run_id} as final"
            )
        time.sleep(poll)
        count = final_task_runs(flow_run_id)
    return count


@contextmanager
def command_api(run_dir: Path | None = None) -> Iterator[str]:
    """The Prefect API for one command: the configured server, or one embedded server started
    here and exported as PREFECT_API_URL, so that worker processes (Dask) report to it instead
    of each starting an embedded server of their own. The server stops when the block ends, and
    dies with the command if it is killed (pipeline.flows.embedded_server).

    With ``run_dir`` (the run folder whose lock the caller holds), flow runs started in the block
    carry the run folder's tag, and runs a killed command left unfinished are marked Crashed."""
    from prefect import tags
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.early_server import set_server_defaults
    from pipeline.flows.embedded_server import TiedServer, mark_crashed_runs, run_folder_tag

    configured = PREFECT_API_URL.value()
    with ExitStack() as stack:
        if configured:
            url = configured
        else:
            set_server_defaults()
            server = TiedServer()
            server.start()
            stack.callback(server.stop)
            url = os.environ["PREFECT_API_URL"] = server.api_url
            stack.callback(os.environ.pop, "PREFECT_API_URL", None)
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
            # Runs before the server stops: send what the client still holds (the flows' last log
            # lines, the last state events) while the server is up; stopping it first loses them,
            # and the log worker then retries at exit ("Error logging to API") for over a minute
            # (after an interrupt, the interpreter's exit would wait on it).
            stack.callback(drain_client_workers)  # drain_all also stops the workers
        if run_dir is not None:
            mark_crashed_runs(run_dir)
            stack.enter_context(tags(run_folder_tag(run_dir)))
        yield url
