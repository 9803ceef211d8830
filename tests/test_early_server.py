"""pipeline.early_server: a command's embedded Prefect server launched before Prefect is imported is
the one the command then uses, and one launched under other settings is stopped, not leaked."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from pipeline.prefect_env import configure_prefect
    from pipeline import early_server

    configure_prefect(Path(sys.argv[1]))
    report = {}
    for case in ("same settings", "environment changed"):
        early_server.start_early()
        early = early_server._EARLY["child"].process
        report[case] = {"early_port": early_server._EARLY["child"].port, "prefect_imported": "prefect" in sys.modules}
        if case == "environment changed":
            os.environ["CROCOPIPE_TEST_SETTING"] = "1"
        from pipeline.flows.history import command_api
        with command_api() as url:
            report[case]["used_port"] = int(url.rsplit(":", 1)[1].split("/")[0])
            report[case]["early_running_inside"] = early.poll() is None
        early.wait(timeout=10)
        report[case]["early_running_after"] = early.poll() is None
    print(json.dumps(report))
""")


@pytest.mark.slow  # two server starts, ~30 s
def test_the_early_server_is_adopted_and_one_that_no_longer_fits_is_stopped(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "prefect")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    same, changed = report["same settings"], report["environment changed"]
    assert not same["prefect_imported"]  # launched before this process imported Prefect
    assert same["used_port"] == same["early_port"] and same["early_running_inside"]
    assert not same["early_running_after"]  # stopped with the command's API block
    assert changed["used_port"] != changed["early_port"]  # a new server under the new settings
    assert not changed["early_running_inside"] and not changed["early_running_after"]
