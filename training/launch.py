"""Start training under torchrun, stream its output, and report the failing rank's traceback.

A plain function (no Prefect) so it can be called from any scheduler. Single machine:
`--standalone`. Several machines: run the same call on every node with nnodes, node_rank and a
rendezvous endpoint (host:port of node 0), e.g.

    crocopipe pretrain run.toml --nnodes 2 --node-rank 0 --rdzv-endpoint node0:29500   # on node 0
    crocopipe pretrain run.toml --nnodes 2 --node-rank 1 --rdzv-endpoint node0:29500   # on node 1

which becomes `python -m torch.distributed.run --nnodes 2 --node-rank R --rdzv-backend c10d
--rdzv-endpoint node0:29500 --rdzv-id <id> --nproc-per-node N -m training.train ...`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rendering.layout import PretrainLayout
from rendering.processes import tied_command
from training.config import PretrainConfig


class TrainingFailed(RuntimeError):
    """torchrun exited with an error; the message holds the failing rank's traceback."""


@dataclass(frozen=True)
class LaunchOptions:
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str = "crocopipe"

    def torchrun_args(self, nproc: int) -> list[str]:
        if self.nnodes == 1 and self.rdzv_endpoint is None:
            args = ["--standalone", "--nnodes", "1"]
        else:
            if self.rdzv_endpoint is None:
                raise ValueError(f"nnodes={self.nnodes} needs a rendezvous endpoint (host:port of node 0)")
            args = ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank), "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", self.rdzv_endpoint, "--rdzv-id", self.rdzv_id]
        return args + ["--nproc-per-node", str(nproc)]


def is_complete(out_dir: Path, cfg: PretrainConfig) -> bool:
    """The method's final weights exist for this very config (so a rerun has nothing to do)."""
    out = PretrainLayout(out_dir)
    summary, saved = out.summary, out.saved_config
    if not (out.weights.is_file() and summary.is_file() and saved.is_file()):
        return False
    try:
        done = json.loads(summary.read_text()).get("steps") == cfg.total_steps
        return done and PretrainConfig.model_validate_json(saved.read_text()) == cfg
    except ValueError:
        return False


def first_failure(log_dir: Path) -> str | None:
    """The earliest error recorded by any rank (torchrun writes <log_dir>/**/<rank>/error.json)."""
    failures = []
    for path in log_dir.glob("**/error.json"):
        try:
            msg = json.loads(path.read_text())["message"]
            info = msg.get("extraInfo", {}) if isinstance(msg, dict) else {}
            text = info.get("py_callstack") or (msg.get("message") if isinstance(msg, dict) else str(msg))
            failures.append((int(info.get("timestamp", 0)), path.parent.name, text))
        except (ValueError, KeyError, OSError):
            continue
    if not failures:
        return None
    ts, rank, text = min(failures)
    return f"rank {rank} failed:\n{text}"


def trainer_environment(nproc: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The trainers' environment: ``base`` (os.environ) with, unless it sets them, the CPU cores
    shared among the ``nproc`` ranks as OpenMP threads, and waiting OpenMP threads that sleep
    instead of spinning. Spinning threads collapse a step when other work holds the cores: tiny
    preset, 2 threads on 2 cores at load average ~4, 4.1-10.1 s per step spinning against 1.1 s
    passive and 1.5-2.4 s with 1 thread (BENCHMARKS.md, "Pretraining under load")."""
    env = dict(os.environ if base is None else base, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_torchrun(
    cfg: PretrainConfig,
    method: str,
    corpus_dir: Path,
    out_dir: Path,
    launch: LaunchOptions = LaunchOptions(),
    on_line: Callable[[str], None] = print,
    extra_args: list[str] | None = None,
) -> Path:
    """Train one method to completion (resuming if possible); returns the final weights' path."""
    out_dir = Path(out_dir)
    if is_complete(out_dir, cfg):
        on_line(f"{method}: already complete in {out_dir}")
        return PretrainLayout(out_dir).weights
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = PretrainLayout(out_dir).launch_config
    config_path.write_text(cfg.model_dump_json(indent=2))
    log_dir = out_dir / "logs" / f"torchrun-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch.torchrun_args(cfg.nproc), "--log-dir", str(log_dir),
           "-m", "training.train", "--config", str(config_path), "--method", method,
           "--corpus", str(corpus_dir), "--out", str(out_dir), *(extra_args or [])]
    env = trainer_environment(cfg.nproc)
    on_line("launch: " + " ".join(cmd))
    tail: deque[str] = deque(maxlen=40)
    # torchrun dies with this process, and its trainers (in a new session of their own) with it:
    # see rendering/processes.py and training.train.main.
    with open(log_dir / "output.log", "w") as log_file, subprocess.Popen(
        tied_command(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                log_file.write(line + "\n")
                tail.append(line)
                on_line(line)
        except BaseException:  # interrupted: stop training now (the trainers die with torchrun)
            proc.kill()
            raise
        rc = proc.wait()
    if rc != 0:
        detail = first_failure(log_dir) or "no rank recorded an error; last output:\n" + "\n".join(tail)
        raise TrainingFailed(f"pretraining {method} failed (torchrun exit code {rc}); logs in {log_dir}\n{detail}")
    return PretrainLayout(out_dir).weights
