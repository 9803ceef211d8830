"""`crocopipe pretrain CONFIG`: pretrain the configured methods on the run's corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def pretrain(
    config: Path = typer.Argument(..., help="run TOML with a [pretrain] section"),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="train only this method (repeatable)"),
    nproc: Optional[int] = typer.Option(None, help="processes per node (overrides pretrain.nproc)"),
    nnodes: int = typer.Option(1, help="machines taking part (multi-node: run this command on each)"),
    node_rank: int = typer.Option(0, help="this machine's rank among nnodes"),
    rdzv_endpoint: Optional[str] = typer.Option(None, help="host:port of node 0 for multi-node rendezvous"),
    rdzv_id: str = typer.Option("crocopipe", help="job id shared by all nodes of one run"),
    retries: int = typer.Option(1, min=0, help="task retries; each retry resumes from the last checkpoint"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also print Prefect's and torchrun's log lines (always in <run_dir>/prefect/prefect.log)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only errors and the final summary"),
    plain: bool = typer.Option(False, "--plain", help="plain progress lines instead of the live display (the default when output is not a terminal)"),
) -> None:
    """Pretrain CroCo v1/v2 and MAE with torchrun (gloo on CPU, NCCL on GPU), resumable."""
    from pipeline.config import ConfigError, load_run_config
    from pipeline.early_server import start_early, stop_early
    from pipeline.prefect_env import configure_prefect
    from rendering.layout import CorpusLayout

    try:
        run = load_run_config(config)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if run.pretrain is None:
        typer.echo(f"{config}: no [pretrain] section", err=True)
        raise typer.Exit(2)
    cfg = run.pretrain if nproc is None else run.pretrain.model_copy(update={"nproc": nproc})
    methods = method or list(cfg.methods)
    from training.methods import PRETRAINED_METHODS

    unknown = [m for m in methods if m not in PRETRAINED_METHODS]
    if unknown:
        typer.echo(f"unknown method(s) {unknown}; choose from {', '.join(PRETRAINED_METHODS)} "
                   "(the 'none' baseline needs no pretraining)", err=True)
        raise typer.Exit(2)
    corpora = [(f"pretrain.corpora[{i}]", c.path) for i, c in enumerate(cfg.corpora)] or [("corpus", run.corpus_dir)]
    for where, folder in corpora:
        manifest = CorpusLayout(Path(folder)).manifest
        if not manifest.is_file():
            typer.echo(f"{where}: no corpus at {folder} ({manifest.name} missing): generate (or mine) it first", err=True)
            raise typer.Exit(2)
    from pipeline.run_lock import RunLock, RunLockedError

    try:
        lock = RunLock(run.run_dir, purpose="pretrain").acquire()
    except RunLockedError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from None
    try:
        configure_prefect(run.prefect_home, verbose=verbose)
        start_early()
        from pipeline.console import Display, choose_mode, pretrain_stage
        from pipeline.flows.history import command_api
        from pipeline.flows.pretrain import pretrain_flow
        from pipeline.resolved import resolved

        launch = {"nnodes": nnodes, "node_rank": node_rank, "rdzv_endpoint": rdzv_endpoint, "rdzv_id": rdzv_id}
        display = Display([pretrain_stage(resolved(run.model_copy(update={"pretrain": cfg})), methods)],
                          mode=choose_mode(quiet, plain))
        with display, command_api(run.run_dir):
            results = pretrain_flow(str(run.run_dir), cfg.model_dump(mode="json"), methods, launch, retries)
    finally:
        stop_early()  # a server no flow adopted
        lock.release()
    for m, path in results.items():
        typer.echo(f"{m}: {path}")
