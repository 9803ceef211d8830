"""`crocopipe generate | verify | inspect | regenerate | import-croco-metadata`: pair corpora.

Top-level imports are the standard library and typer only; the bodies configure Prefect (when
they use it) before importing it. Exit codes: 0 success, 1 failure of the work or of verify,
2 bad input (config, paths, arguments), 3 output in use by another run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_LOCKED, PLAIN_HELP, QUIET_HELP, VERBOSE_HELP


def _fail(message: object, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _corpus_dir(path: Path) -> Path:
    """Accept a corpus folder or a run folder holding corpus/."""
    from rendering.layout import RunLayout

    inner = RunLayout(path).corpus
    return inner.root if inner.info.exists() else path


def generate(
    config: Path = typer.Argument(..., help="run TOML with a [corpus] section"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
    repair: bool = typer.Option(False, "--repair", help="verify every byte first and re-render what is damaged"),
) -> None:
    """Render the configured pair corpus into <run_dir>/corpus; re-run to resume after a crash."""
    from pipeline.config import ConfigError, load_run_config
    from pipeline.corpus.build import CorpusStateError, check_corpus_dir, finished_corpus
    from pipeline.run_lock import RunLock, RunLockedError
    from pipeline.corpus.plan import CorpusPlanError, plan_units, previous_assignment

    try:
        run = load_run_config(config)
        units = plan_units(run.corpus, previous=previous_assignment(run.layout.corpus.plan))
        check_corpus_dir(run.corpus_dir, run.corpus)
    except (ConfigError, CorpusPlanError, CorpusStateError) as err:
        _fail(err, EXIT_BAD_INPUT)
    try:
        lock = RunLock(run.run_dir, purpose="generate").acquire()
    except RunLockedError as err:
        _fail(err, EXIT_LOCKED)
    try:
        if repair:
            _remove_damage(run.corpus_dir, units)
        info = finished_corpus(run.corpus_dir, run.corpus, units)
        if info is not None:  # nothing to do: answer in seconds, without starting Prefect
            counts = info["counts"]
            typer.echo(f"corpus {info['corpus_id']} in {run.corpus_dir} is already complete: "
                       f"{counts['pairs']['train']} train + {counts['pairs']['val']} val pairs in "
                       f"{len(units)} shards (run `crocopipe verify {run.corpus_dir}` to check every byte)")
            return
        from pipeline.preflight import check_packages

        try:
            check_packages(run.corpus)  # an optional backend that is missing: before Prefect starts
        except ConfigError as err:
            _fail(err, EXIT_BAD_INPUT)
        _generate_locked(run, verbose, quiet, plain)
    finally:
        lock.release()


def _remove_damage(corpus_dir: Path, units) -> None:
    """`generate --repair`: verify, then delete what is damaged so that generation redoes exactly it."""
    from pipeline.corpus.repair import repair_corpus
    from pipeline.corpus.verify import verify_corpus
    from rendering.layout import CorpusLayout

    if not CorpusLayout(corpus_dir).info.is_file():
        typer.echo(f"{corpus_dir} holds no finished corpus yet: generating it (temporaries of killed runs are removed)")
        return
    report = verify_corpus(corpus_dir)
    if report.ok:
        typer.echo(f"verify: {report.summary()}; nothing to repair")
        return
    typer.echo(report.summary())
    removed = repair_corpus(corpus_dir, report, units)
    typer.echo(f"repair: removed {len(removed)} damaged or stray file(s): {', '.join(removed)}; "
               f"re-rendering {len(report.damaged_units)} unit(s) and merging the manifest again")


def check_scenes_first(run, pool) -> None:
    """The scene check before Prefect starts (its results are cached per scene, so the flow's own
    check then costs nothing): unusable scenes exit 2 here, without a traceback or a unit run.
    ``pool``: the command's render processes (spawned, as the units use: GL contexts live in the
    workers, never forked)."""
    from pipeline.corpus.scene_check import SceneCheckError, run_scene_check

    try:
        run_scene_check(run.corpus, run.layout, pool)
    except SceneCheckError as err:
        _fail(f"{err}\nscene check report: {run.layout.scene_check_dir / 'check.md'}", EXIT_BAD_INPUT)


def _generate_locked(run, verbose: bool, quiet: bool, plain: bool) -> None:
    from pipeline.corpus.unit import render_process_pool
    from pipeline.early_server import start_early, stop_early
    from pipeline.prefect_env import configure_prefect
    from pipeline.process_pool import kill_pool

    configure_prefect(run.prefect_home, verbose=verbose)
    start_early()  # the Prefect server starts while the scenes are checked
    pool = None
    if run.corpus.task_runner == "threads":  # on Dask the flow checks on the cluster's workers
        # The render processes of the whole command: started (and warmed up) once, they check the
        # scenes now and render the units afterwards, while the Prefect server starts.
        pool = render_process_pool(run.corpus.workers, run.corpus.backend, run.corpus.backend_options, warm_up=True)
    try:
        if pool is not None:
            check_scenes_first(run, pool)
        _generate_flow(run, pool, verbose, quiet, plain)
    except BaseException:
        if pool is not None:
            kill_pool(pool)
        raise
    finally:
        stop_early()  # a server no flow adopted (the scene check failed)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _generate_flow(run, pool, verbose: bool, quiet: bool, plain: bool) -> None:
    import time

    from pipeline.prefect_env import configure_prefect

    home = configure_prefect(run.prefect_home, verbose=verbose)
    from pipeline.console import Display, choose_mode, generate_stage, human_seconds
    from pipeline.flows.generate import run_generate
    from pipeline.resolved import resolved

    display = Display([generate_stage(resolved(run), time.time())], mode=choose_mode(quiet, plain))
    if display.mode != "quiet":
        display.console.print(f"crocopipe generate {run.run_dir} (Prefect log: {home / 'prefect.log'})",
                              markup=False, highlight=False, soft_wrap=True)
    from pipeline.corpus.plan import CorpusPlanError
    from pipeline.corpus.scene_check import SceneCheckError

    t0 = time.perf_counter()
    try:
        with display:
            result = run_generate(run, executor=pool)
    except (SceneCheckError, CorpusPlanError) as err:  # bad scenes: nothing was rendered
        _fail(f"{err}\nscene check report: {run.layout.scene_check_dir / 'check.md'}", EXIT_BAD_INPUT)
    except Exception as err:  # the flow's own error, already logged by Prefect
        _fail(f"generation failed: {err}. Completed units are kept; re-run the command to resume "
              f"(details: {home / 'prefect.log'}).", EXIT_FAILED)
    seconds = time.perf_counter() - t0
    counts = result["counts"]
    skipped = result.get("skipped_scenes") or []
    if skipped:
        typer.echo(f"skipped {len(skipped)} scene(s) the scene check refused (on_scene_error = \"skip\"; "
                   f"see {run.layout.scene_check_dir / 'check.md'}):")
        for scene in skipped:
            typer.echo(f"  {scene['scene_id']}: {scene['reason']}")
    typer.echo(
        f"corpus {result['corpus_id']} in {result['corpus_dir']}: {counts['pairs']['train']} train + "
        f"{counts['pairs']['val']} val pairs in {result['units']} shards "
        f"({result['units_reused']} units reused, {counts['failed_pairs']} pairs failed); "
        f"{result['task_runs_recorded']} task runs recorded in Prefect; {human_seconds(seconds)}"
    )


def verify(corpus: Path = typer.Argument(..., help="corpus folder (or the run folder holding corpus/)")) -> None:
    """Check every shard, hash, sample and manifest row; exit 1 with a precise report otherwise."""
    from pipeline.corpus.verify import verify_corpus

    report = verify_corpus(_corpus_dir(corpus))
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def inspect(corpus: Path = typer.Argument(..., help="corpus folder (or the run folder holding corpus/)")) -> None:
    """Print the corpus's statistics (the dataset card's stats.md) and where its card files are."""
    from rendering.layout import CorpusLayout

    folder = _corpus_dir(corpus)
    layout = CorpusLayout(folder)
    info_path = layout.info
    if not info_path.is_file():
        _fail(f"{info_path} does not exist (is {folder} a finished corpus?)", EXIT_BAD_INPUT)
    stats = layout.card_dir / "stats.md"
    if stats.is_file():
        typer.echo(stats.read_text())
    else:
        info = json.loads(info_path.read_text())
        typer.echo(json.dumps(info.get("counts", {}), indent=2))
    for name in (layout.manifest.name, layout.info.name, "card/overlap_histogram.png", "card/contact_sheet.png"):
        path = folder / name
        if path.exists():
            typer.echo(f"{name}: {path}")


def regenerate(
    manifest: Path = typer.Argument(..., help="manifest.parquet of a corpus, or one from import-croco-metadata"),
    out: Path = typer.Option(..., "--out", help="empty folder for the re-rendered corpus"),
    width: Optional[int] = typer.Option(None, min=8, help="new image width (K is scaled); needs --height"),
    height: Optional[int] = typer.Option(None, min=8, help="new image height (K is scaled); needs --width"),
    backend: Optional[str] = typer.Option(None, help="renderer backend (default: the corpus's, else embedded)"),
    pairs_per_shard: int = typer.Option(1000, min=1, help="for rows without a shard (imported manifests)"),
) -> None:
    """Re-render the stored poses of a manifest, optionally at another resolution or backend."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.run_lock import RunLock, RunLockedError
    from pipeline.corpus.manifest import ManifestError
    from pipeline.corpus.regenerate import RegenerateError, regenerate_corpus
    from rendering.backend import SceneLoadError

    if not Path(manifest).is_file():
        _fail(f"manifest {manifest} does not exist", EXIT_BAD_INPUT)
    try:
        lock = RunLock(out, purpose="regenerate").acquire()
    except RunLockedError as err:
        _fail(err, EXIT_LOCKED)
    try:
        with Progress(TextColumn("[bold]pairs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
            task_id = bar.add_task("", total=None)
            info = regenerate_corpus(
                manifest, out, width=width, height=height, backend=backend, pairs_per_shard=pairs_per_shard,
                progress=lambda done, total: bar.update(task_id, completed=done, total=total),
            )
    except (RegenerateError, ManifestError, SceneLoadError) as err:
        _fail(err, EXIT_BAD_INPUT)
    finally:
        lock.release()
    typer.echo(f"{info['counts']['pairs_total']} pairs in {info['counts']['shards']} shards under {out}")


def import_croco_metadata(
    metadata_json: list[Path] = typer.Argument(..., help="per-scene metadata.json files of CroCo's generator"),
    out: Path = typer.Option(..., "--out", help="manifest.parquet to write (must not exist)"),
    scene_root: Optional[Path] = typer.Option(None, help="folder the files' relative scene paths are relative to"),
    split: str = typer.Option("auto", help="train, val, or auto (val for scenes under val/ or minival/)"),
    up_axis: str = typer.Option("auto", help="scene files' up axis: y, z, or auto (ReplicaCAD y, others z)"),
) -> None:
    """Convert CroCo's released Habitat pair metadata into a pose manifest for `regenerate`."""
    from pipeline.corpus.croco_import import CrocoMetadataError, import_croco_metadata as run_import

    if split not in ("auto", "train", "val"):
        _fail(f"--split must be auto, train or val, got {split!r}", EXIT_BAD_INPUT)
    if up_axis not in ("auto", "y", "z"):
        _fail(f"--up-axis must be auto, y or z, got {up_axis!r}", EXIT_BAD_INPUT)
    try:
        n = run_import(metadata_json, out, scene_root=scene_root, split=split, up_axis=up_axis)
    except CrocoMetadataError as err:
        _fail(err, EXIT_BAD_INPUT)
    typer.echo(f"{n} pairs from {len(metadata_json)} metadata file(s) -> {out}")
