"""Evaluation jobs side by side in job processes: how many, how many threads, same results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.config import EvaluateConfig


def test_default_is_one_single_threaded_process_per_core_and_one_on_cuda():
    cfg = EvaluateConfig()
    assert cfg.job_processes(jobs=12, cores=2, cuda=False) == (2, 1)
    assert cfg.job_processes(jobs=12, cores=16, cuda=False) == (4, 4)  # at most 4 processes
    assert cfg.job_processes(jobs=1, cores=8, cuda=False) == (1, 8)  # never more processes than jobs
    assert cfg.job_processes(jobs=0, cores=2, cuda=False) == (1, 2)
    assert cfg.job_processes(jobs=12, cores=8, cuda=True) == (1, 8)
    assert EvaluateConfig(workers=3, threads=2).job_processes(jobs=12, cores=2, cuda=False) == (3, 2)
    assert EvaluateConfig(workers=3).job_processes(jobs=12, cores=2, cuda=False) == (3, 1)


def test_workers_and_threads_are_validated_and_change_no_fingerprint():
    with pytest.raises(ValueError, match="workers"):
        EvaluateConfig(workers=0)
    with pytest.raises(ValueError, match="threads"):
        EvaluateConfig(threads=0)
    spec = {"img_size": 32}
    assert EvaluateConfig(workers=3, threads=2).fingerprint(spec, "depth") == EvaluateConfig().fingerprint(spec, "depth")


@pytest.mark.slow
def test_a_job_run_in_a_spawned_job_process_gives_the_in_process_result(tmp_path, trained_run):
    """The evaluate flow's job processes run evaluation.jobs.run_job_in_process: its result must be
    the one the same job gives in the flow's own process (same seed, one thread each)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from conftest import copy_run  # the session's tiny run: corpus and checkpoint

    from evaluation.jobs import run_job, run_job_in_process
    from evaluation.plan import plan_jobs
    from pipeline.config import load_run_config
    from pipeline.resolved import resolve_evaluation

    run = load_run_config(copy_run(trained_run, tmp_path))
    evaluation = resolve_evaluation(run)
    cfg, spec = evaluation.config, evaluation.spec
    job = plan_jobs(run.layout, cfg)[0]
    run_job(job, str(run.corpus_dir), cfg, spec)  # in this process
    in_process = json.loads(Path(job.result).read_text())
    Path(job.result).unlink()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result, reused = pool.submit(
            run_job_in_process, job.as_dict(), str(run.corpus_dir), cfg.model_dump(mode="json"), spec
        ).result()
    assert not reused and Path(job.result).is_file()
    result = json.loads(json.dumps(result))  # as stored
    assert result["metrics"] == in_process["metrics"]
    assert result["train_loss"] == in_process["train_loss"]
