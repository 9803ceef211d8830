"""Training as real processes: SIGKILL and resume, 2-rank gloo DDP under torchrun, the launcher's
error reporting, and `crocopipe pretrain` through Prefect."""

from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.checkpoint import latest_valid
from training.config import PretrainConfig
from training.launch import LaunchOptions, TrainingFailed, run_torchrun, trainer_environment
from training.synthetic import write_synthetic_corpus
from training.train import train

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**overrides) -> PretrainConfig:
    base = dict(methods=["croco_v1"], preset="test", batch_size=4, epochs=4, steps_per_epoch=4, warmup_epochs=1,
                stop_fraction=1.0, checkpoint_every=4, log_every=1, figure_every=1000, num_workers=0,
                base_lr=0.03, shuffle_buffer=8, tensorboard=False)
    return PretrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(root, shards=2, pairs_per_shard=8, size=40)
    return root


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted(corpus, tmp_path) -> None:
    cfg = tiny_config(epochs=2, checkpoint_every=2)  # 8 steps
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(tmp_path / "cfg.json"), "--method", "croco_v1",
         "--corpus", str(corpus), "--out", str(killed), "--fault-after-step", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    newest = killed / "checkpoints" / "step-00000004.pt"
    assert newest.is_file() and not (killed / "model.pt").exists()
    newest.write_bytes(newest.read_bytes()[:1500])  # and the newest checkpoint is damaged too
    path, _ = latest_valid(killed / "checkpoints")
    assert path.name == "step-00000002.pt"
    summary = train(cfg, "croco_v1", corpus, killed)  # warns, resumes from step 2
    assert summary["resumed_from"] == 2 and summary["steps"] == 8
    train(cfg, "croco_v1", corpus, tmp_path / "ref")
    a, b = losses(tmp_path / "ref"), losses(killed)
    assert sorted(b) == list(range(1, 9))  # no step lost or logged twice
    for step in range(3, 9):  # stated tolerance: 1e-4 relative (thread counts may reorder float sums)
        assert b[step] == pytest.approx(a[step], rel=1e-4), step


@pytest.mark.slow
def test_two_rank_gloo_ddp_completes_with_equal_steps_and_resumes_alone(corpus, tmp_path) -> None:
    cfg = tiny_config(nproc=2, batch_size=2, accumulation=2, epochs=1, steps_per_epoch=6, warmup_epochs=0,
                      checkpoint_every=3)
    out = tmp_path / "ddp"
    lines: list[str] = []
    run_torchrun(cfg, "croco_v2", corpus, out, on_line=lines.append)
    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["steps_taken"] == ranks[1]["steps_taken"] == 6
    assert ranks[0]["samples_seen"] == ranks[1]["samples_seen"] == 24
    assert sorted(losses(out)) == list(range(1, 7))
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    assert any("[rank 1]" in ln for ln in lines) and any("[rank 0]" in ln for ln in lines)
    lines.clear()
    run_torchrun(cfg, "croco_v2", corpus, out, on_line=lines.append)
    assert lines == [f"croco_v2: already complete in {out}"]
    # a 2-rank checkpoint resumes in a single process (e.g. after losing a machine)
    longer = cfg.model_copy(update={"nproc": 1, "epochs": 2, "stop_fraction": 0.75})  # 9 steps
    shutil.copytree(out / "checkpoints", tmp_path / "alone" / "checkpoints")
    summary = train(longer, "croco_v2", corpus, tmp_path / "alone")
    assert summary["resumed_from"] == 6 and sorted(losses(tmp_path / "alone")) == [7, 8, 9]


@pytest.mark.slow
def test_launcher_reports_the_failing_ranks_traceback(tmp_path) -> None:
    empty = tmp_path / "corpus"
    empty.mkdir()
    with pytest.raises(TrainingFailed) as err:
        run_torchrun(tiny_config(nproc=1), "mae", empty, tmp_path / "out", on_line=lambda _: None)
    text = str(err.value)
    assert "rank 0 failed" in text and "CorpusError" in text and "no manifest.parquet" in text
    with pytest.raises(ValueError, match="rendezvous endpoint"):
        LaunchOptions(nnodes=2).torchrun_args(4)
    args = LaunchOptions(nnodes=2, node_rank=1, rdzv_endpoint="node0:29500").torchrun_args(4)
    assert args[:4] == ["--nnodes", "2", "--node-rank", "1"] and "--standalone" not in args


def test_crocopipe_pretrain_rejects_bad_configs_before_starting_anything(tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    corpus_toml = "[corpus]\npairs_per_scene = 1\npairs_per_shard = 1\n[corpus.scenes.procedural]\ncount = 1\n"
    (tmp_path / "nopre.toml").write_text('run_dir = "run"\n' + corpus_toml)
    (tmp_path / "typo.toml").write_text('run_dir = "run"\n' + corpus_toml + "[pretrain]\nbatchsize = 4\n")
    (tmp_path / "ok.toml").write_text('run_dir = "run"\n' + corpus_toml + "[pretrain]\npreset = 'test'\n")
    runner = CliRunner()
    result = runner.invoke(app, ["pretrain", str(tmp_path / "nopre.toml")])
    assert result.exit_code == 2 and "no [pretrain] section" in result.output
    result = runner.invoke(app, ["pretrain", str(tmp_path / "typo.toml")])
    assert result.exit_code == 2 and "pretrain.batchsize" in result.output
    result = runner.invoke(app, ["pretrain", str(tmp_path / "ok.toml"), "--method", "none"])
    assert result.exit_code == 2 and "needs no pretraining" in result.output
    result = runner.invoke(app, ["pretrain", str(tmp_path / "ok.toml")])
    assert result.exit_code == 2 and "no corpus at" in result.output and "generate (or mine) it first" in result.output
    assert not (tmp_path / "run").exists()


def test_trainers_share_the_cores_and_their_waiting_threads_sleep_unless_the_user_chose() -> None:
    cores = os.cpu_count() or 1
    env = trainer_environment(1, base={"PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == str(cores) and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env["PATH"] == "/bin" and env["PYTHONUNBUFFERED"] == "1"
    assert trainer_environment(cores * 2, base={})["OMP_NUM_THREADS"] == "1"
    chosen = trainer_environment(1, base={"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"})
    assert (chosen["OMP_NUM_THREADS"], chosen["OMP_WAIT_POLICY"]) == ("3", "ACTIVE")
