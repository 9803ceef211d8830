"""Is each stage of a run complete? Prefect-free checks, so the CLI answers a finished run in
seconds and the end-to-end flow skips finished stages without starting them."""

from __future__ import annotations

from pipeline.config import RunConfig


def pretrain_methods(run: RunConfig) -> list[str]:
    """Methods that need weights: the pretrain section's, plus any the evaluation compares."""
    methods = list(run.pretrain.methods) if run.pretrain is not None else []
    if run.evaluate is not None:
        methods += [m for m in run.evaluate.methods if m != "none" and m not in methods]
    return methods


def corpus_done(run: RunConfig) -> bool:
    from pipeline.corpus.build import finished_corpus
    from pipeline.corpus.plan import plan_units

    return finished_corpus(run.corpus_dir, run.corpus, plan_units(run.corpus)) is not None


def pretrain_done(run: RunConfig) -> bool:
    from training.launch import is_complete

    if run.pretrain is None:
        return False
    return all(is_complete(run.run_dir / "pretrain" / m, run.pretrain) for m in pretrain_methods(run))


def evaluate_done(run: RunConfig, cfg, spec: dict) -> bool:
    from evaluation.plan import pending_jobs, plan_jobs, tables_current

    jobs = plan_jobs(run.run_dir, cfg, run.corpus_dir)
    return not pending_jobs(jobs, cfg, spec) and tables_current(run.run_dir, jobs)


def all_done(run: RunConfig, cfg, spec: dict) -> bool:
    return corpus_done(run) and pretrain_done(run) and evaluate_done(run, cfg, spec)
