"""Is each stage of a run complete? Prefect-free checks, so the CLI answers a finished run in
seconds and the end-to-end flow skips finished stages without starting them."""

from __future__ import annotations

import threading

from pipeline.resolved import ResolvedRun
from training.methods import get_method

_PLAN_LOCK = threading.Lock()  # the flow and the live display's thread may ask at the same moment


def pretrain_methods(run: ResolvedRun) -> list[str]:
    """Methods that need weights: the pretrain section's, plus any the evaluation compares."""
    config = run.config
    methods = list(config.pretrain.methods) if config.pretrain is not None else []
    evaluate = run.evaluation.config if run.evaluation is not None else config.evaluate
    if evaluate is not None:
        methods += [m for m in evaluate.methods if get_method(m).pretrained and m not in methods]
    return methods


def corpus_done(run: ResolvedRun) -> bool:
    from pipeline.corpus.build import finished_corpus
    from pipeline.corpus.plan import plan_units

    return finished_corpus(run.layout.corpus_dir, run.config.corpus, plan_units(run.config.corpus)) is not None


def pretrain_done(run: ResolvedRun) -> bool:
    from training.launch import is_complete

    if run.config.pretrain is None:
        return False
    return all(is_complete(run.layout.pretrain(m).root, run.config.pretrain) for m in pretrain_methods(run))


def evaluation_jobs(run: ResolvedRun) -> list:
    """Every evaluation job of the run (evaluation.plan.plan_jobs), planned once per resolved run.

    Planning checks the val split, opens the external datasets and finds the checkpoints, so the
    first answer is kept on the run for the stage checks, the evaluate stage and the live display
    of the same command. A plan that fails (weights not there yet) is not kept: the next call
    plans again. The jobs name result and checkpoint paths only, so pretraining afterwards (the
    same paths) leaves them valid.
    """
    from evaluation.plan import plan_jobs

    evaluation = run.evaluation
    if evaluation is None:
        raise ValueError("the run was resolved without its evaluation")
    with _PLAN_LOCK:
        if "evaluation_jobs" not in run.derived:
            run.derived["evaluation_jobs"] = plan_jobs(run.layout, evaluation.config)
        return run.derived["evaluation_jobs"]


def evaluation_plan(run: ResolvedRun):
    """(jobs, done): every evaluation job of the run, and whether results and tables are current."""
    from evaluation.plan import pending_jobs, tables_current

    jobs = evaluation_jobs(run)
    evaluation = run.evaluation
    return jobs, not pending_jobs(jobs, evaluation.config, evaluation.spec) and tables_current(run.layout, jobs)


def all_done(run: ResolvedRun) -> bool:
    return corpus_done(run) and pretrain_done(run) and evaluation_plan(run)[1]
