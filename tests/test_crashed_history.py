"""The history sweep a command runs under the run lock: the unfinished flow and task runs a
killed command left in a run folder are marked Crashed, also the task runs of a flow run that the
killed command itself already recorded as Crashed; other run folders' runs are left as they are."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import prefect_client_env

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Running
    from pipeline.flows.embedded_server import mark_crashed_runs, run_folder_tag

    @flow
    def some_flow(): pass

    @task
    def some_task(): pass

    run_dir, other_dir = Path(sys.argv[1]), Path(sys.argv[2])
    ids = {}
    with get_client(sync_client=True) as client:
        def flow_run(name, folder, state):
            run = client.create_flow_run(some_flow, name=name, tags=[run_folder_tag(folder)], state=state)
            ids[name] = str(run.id)
            ids[name + "/task"] = str(client.create_task_run(some_task, run.id, dynamic_key="0", state=Running()).id)
        flow_run("signalled", run_dir, Crashed())  # flow run final, its task run left Running
        flow_run("killed", run_dir, Running())  # both left Running
        flow_run("other-folder", other_dir, Running())
        marked = mark_crashed_runs(run_dir)
        states = {name: (client.read_task_run(i) if name.endswith("/task") else client.read_flow_run(i)).state.type.value
                  for name, i in ids.items()}
    print(json.dumps({"marked": marked, "states": states}))
""")


def test_sweep_marks_unfinished_runs_of_the_folder_only(tmp_path, prefect_server):
    api_url, _ = prefect_server
    env = prefect_client_env(api_url) | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run"), str(tmp_path / "other")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["marked"] == 1
    assert result["states"] == {
        "signalled": "CRASHED", "signalled/task": "CRASHED",
        "killed": "CRASHED", "killed/task": "CRASHED",
        "other-folder": "RUNNING", "other-folder/task": "RUNNING",
    }
