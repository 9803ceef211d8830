"""Is each stage of a run complete? Prefect-free checks, so the CLI answers a finished run in
seconds and the end-to-end flow skips finished stages without starting them."""

from __future__ import annotations

from pipeline.resolved import ResolvedRun
from training.methods import get_method


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


def evaluation_plan(run: ResolvedRun):
    """(jobs, done): every evaluation job of the run, and whether results and tables are current."""
    from evaluation.plan import pending_jobs, plan_jobs, tables_current

    evaluation = run.evaluation
    if evaluation is None:
        raise ValueError("the run was resolved without its evaluation")
    jobs = plan_jobs(run.layout, evaluation.config)
    return jobs, not pending_jobs(jobs, evaluation.config, evaluation.spec) and tables_current(run.layout, jobs)


def all_done(run: ResolvedRun) -> bool:
    return corpus_done(run) and pretrain_done(run) and evaluation_plan(run)[1]
