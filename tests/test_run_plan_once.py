"""One `crocopipe run` reads its config once and plans the evaluation once: the stage checks, the
evaluate stage and the live display share the plan (pipeline.stages.evaluation_jobs).

In-process, with the generate and pretrain stages complete and the evaluate flow's work replaced,
so that only the command's own checks, its flow body (run_stages) and its display run."""

from __future__ import annotations

import contextlib
import logging

from typer.testing import CliRunner

from test_eval_ground_truth import write_val_corpus

CONFIG = """
run_dir = "run"

[corpus]
pairs_per_scene = 2
pairs_per_shard = 2
[corpus.scenes.procedural]
count = 2

[pretrain]
methods = ["croco_v1"]
preset = "test"

[evaluate]
methods = ["croco_v1", "none"]
tasks = ["depth"]
steps = 1
seeds = [0, 1]
"""


def test_run_loads_the_config_and_plans_the_evaluation_once(tmp_path, monkeypatch):
    import pipeline.prefect_env  # noqa: F401  (the flow modules import prefect)
    import evaluation.plan as plan
    import pipeline.flows.evaluate as evaluate_flows
    import pipeline.flows.history as history
    import pipeline.flows.run as run_flows
    import pipeline.resolved as resolved
    import pipeline.stages as stages
    from pipeline.cli import app

    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    run_dir = tmp_path / "run"
    write_val_corpus(run_dir / "corpus", pairs_per_scene=2)
    weights = run_dir / "pretrain" / "croco_v1" / "model.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"planning checks that the weights exist, it does not read them")

    calls = {"load_run_config": 0, "resolve_evaluation": 0, "plan_jobs": 0}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(resolved, "load_run_config")
    counted(resolved, "resolve_evaluation")
    counted(plan, "plan_jobs")
    for module in (stages, run_flows):  # the flow body imported the checks by name
        monkeypatch.setattr(module, "corpus_done", lambda run: True)
        monkeypatch.setattr(module, "pretrain_done", lambda run: True)
    passed = []

    def evaluate(run_dir, config, spec, jobs):
        passed.extend(jobs)
        return {"jobs": len(jobs), "reused": 0}

    monkeypatch.setattr(evaluate_flows, "evaluate_flow", evaluate)
    monkeypatch.setattr(run_flows, "run_flow", lambda config_path, resolved: run_flows.run_stages(resolved))
    monkeypatch.setattr(run_flows, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(history, "command_api", lambda run_dir: contextlib.nullcontext())
    monkeypatch.setattr(pipeline.prefect_env, "configure_prefect", lambda home, verbose=False: home)

    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assert "evaluate: done, 4 jobs (0 reused)" in result.output
    assert sorted((j["method"], j["seed"]) for j in passed) == [("croco_v1", 0), ("croco_v1", 1), ("none", 0), ("none", 1)]
    # the command's finished-check, the flow's evaluate stage and the display's final poll all asked
    assert calls == {"load_run_config": 1, "resolve_evaluation": 1, "plan_jobs": 1}
