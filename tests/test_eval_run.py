"""`crocopipe run` stage skipping and `crocopipe schedule` (a deployment run against a local server).

The run folder is brought to "every stage complete" with the plain library functions the flows
wrap (no Prefect), which is also what the second invocation of `crocopipe run` must detect.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TRAINED_RUN as RUN, copy_run  # tests/conftest.py TINY_RUN with these changes


def _complete_run(folder: Path, trained: Path) -> Path:
    """A copy of the session's trained run (tests/conftest.py) with every evaluation job done and
    the tables written by the plain functions; returns the config path."""
    from evaluation.jobs import run_job
    from evaluation.plan import plan_jobs
    from evaluation.tables import write_tables
    from pipeline.config import load_run_config
    from pipeline.resolved import resolve_evaluation

    config = copy_run(trained, folder)
    run = load_run_config(config)
    evaluation = resolve_evaluation(run)
    cfg, spec = evaluation.config, evaluation.spec
    for job in plan_jobs(run.layout, cfg):
        run_job(job, str(run.corpus_dir), cfg, spec)
    write_tables(run.run_dir, list(cfg.methods), list(cfg.tasks), list(cfg.seeds))
    return config


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory, trained_run):
    return _complete_run(tmp_path_factory.mktemp("e2e"), trained_run)


def _cli(*args: str):
    from typer.testing import CliRunner

    from pipeline.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_finished_run_does_no_work(complete_run):
    from pipeline.resolved import resolve_run
    from pipeline.stages import corpus_done, pretrain_done, pretrain_methods

    run = resolve_run(complete_run)
    assert corpus_done(run) and pretrain_done(run)
    assert pretrain_methods(run) == ["croco_v1"]
    before = {p: p.stat().st_mtime_ns for p in run.run_dir.rglob("*") if p.is_file()}
    result = _cli("run", str(complete_run))
    assert result.exit_code == 0, result.output
    assert "every stage of" in result.output and "is complete" in result.output
    after = {p: p.stat().st_mtime_ns for p in run.run_dir.rglob("*") if p.is_file()}
    assert after == before  # nothing written, no Prefect home created
    assert not (run.run_dir / "prefect").exists()


def test_run_and_schedule_bad_input(tmp_path, run_toml):
    config = tmp_path / "run.toml"
    config.write_text(run_toml(pretrain=RUN["pretrain"], evaluate={"tasks": ["pose", "stereo"]}))
    result = _cli("run", str(config))
    assert result.exit_code == 2 and "allowed: depth, flow, pose" in result.output
    config.write_text(run_toml(pretrain=None, evaluate=None))  # no [pretrain] section
    result = _cli("run", str(config))
    assert result.exit_code == 2 and "[pretrain] section" in result.output
    config.write_text(run_toml(**RUN))
    result = _cli("schedule", str(config), "--cron", "61 * * *")
    assert result.exit_code == 2 and "invalid cron schedule" in result.output
    assert "PREFECT_HOME" not in os.environ or not str(tmp_path) in os.environ["PREFECT_HOME"]


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_scheduled_deployment_run_completes(complete_run, tmp_path, prefect_server):
    """`crocopipe schedule` serves a cron deployment; one run of it, triggered by hand against a
    local Prefect server (the session's, tests/conftest.py), completes."""
    api, _ = prefect_server
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1"}
    serve = None
    try:
        serve_log = tmp_path / "serve.log"
        with open(serve_log, "w") as log:
            serve = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "schedule", str(complete_run),
                                      "--cron", "0 3 * * *", "--name", "nightly"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        _wait(lambda: "prefect deployment run" in serve_log.read_text(), 180, "the deployment to be served")
        out = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "crocopipe-run/nightly",
                              "--watch", "--watch-timeout", "240"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert "Completed" in out.stdout
        inspect = subprocess.run([sys.executable, "-m", "prefect", "deployment", "inspect", "crocopipe-run/nightly"],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert "0 3 * * *" in inspect.stdout
    finally:
        if serve is not None:
            serve.terminate()
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.kill()


@pytest.mark.slow
def test_flow_ground_truth_on_rendered_pairs(complete_run):
    """Real pairs from the embedded renderer (JPEG, procedural scenes): warping view 2 by the
    ground-truth flow matches view 1 on covisible pixels far better than a 2-px-perturbed flow."""
    import numpy as np

    from evaluation.val_split import read_val_pairs
    from evaluation.ground_truth import pair_flow, warp_by_flow
    from pipeline.config import load_run_config

    run = load_run_config(complete_run)
    errors, perturbed = [], []
    for pair in read_val_pairs(run.corpus_dir):
        flow, covis = pair_flow(pair)
        covis[[0, -1]] = False
        covis[:, [0, -1]] = False
        assert covis.sum() > 100
        img1 = pair.img1.astype(np.float32)
        errors.append(np.abs(warp_by_flow(pair.img2.astype(np.float32), flow) - img1)[covis].mean())
        shifted = warp_by_flow(pair.img2.astype(np.float32), flow + np.float32([2.0, -2.0]))
        perturbed.append(np.abs(shifted - img1)[covis].mean())
    assert np.mean(errors) < 0.6 * np.mean(perturbed), (errors, perturbed)


@pytest.mark.slow
def test_zero_shot_tasks_on_rendered_pairs(complete_run):
    """Correspondence and cross-view gain through the plain job path on real rendered val pairs."""
    import json

    from pipeline.resolved import resolve_run

    run = resolve_run(complete_run)
    for method in ("croco_v1", "none"):
        corr = json.loads(run.layout.result(method, "correspondence", 0).read_text())
        m = corr["metrics"]
        assert m["enc_n_points"] > 0 and m["dec_n_points"] == m["enc_n_points"]
        assert 0.0 <= m["enc_recall_1p"] <= m["enc_recall_2p"] <= m["enc_recall_4p"] <= m["enc_recall_8p"] <= 1.0
        assert 0.0 < m["enc_chance_recall_1p"] < m["enc_chance_recall_8p"] <= 1.0
        assert m["enc_zero_motion_median_epe"] > 0
        assert sum(b["n_points"] for b in corr["bins"]["enc"]["covis"].values()) == m["enc_n_points"]
        assert corr["thresholds_px"]["recall_1p"] == 4.0  # the test preset's patch
        gain = json.loads(run.layout.result(method, "cross_view_gain", 0).read_text())["metrics"]
        assert gain["loss_true"] > 0 and gain["n_pairs"] >= 2
    table = (run.run_dir / "tables" / "results.md").read_text()
    assert "correspondence: enc. recall@1p = 4 px (%) ↑" in table
