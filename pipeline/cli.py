"""The `crocopipe` command line.

Each area's commands live in pipeline/commands/<area>.py and are registered here. Command modules
import only the standard library and typer at top level; prefect, torch and GL are imported inside
the command bodies, after pipeline.prefect_env.configure_prefect has run, so `crocopipe --help` is
fast and Prefect reads the right settings.
"""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="CroCo-style pair corpora, pretraining and evaluation as resumable Prefect flows.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # help texts name TOML sections like [corpus]: print them as written
)


def _print_version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("crocopipe")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        typer.echo(f"crocopipe {version}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """CroCo-style pair corpora, pretraining and evaluation as resumable Prefect flows."""

# Command registrations (one line each): app.command("name")(module.function)
from pipeline.commands import pretrain as _pretrain  # noqa: E402
app.command("pretrain")(_pretrain.pretrain)
from pipeline.commands import corpus as _corpus  # noqa: E402
app.command("generate")(_corpus.generate)
app.command("verify")(_corpus.verify)
app.command("inspect")(_corpus.inspect)
app.command("regenerate")(_corpus.regenerate)
app.command("import-croco-metadata")(_corpus.import_croco_metadata)
from pipeline.commands import evaluate as _evaluate  # noqa: E402
app.command("evaluate")(_evaluate.evaluate)
from pipeline.commands import run as _run  # noqa: E402
app.command("run")(_run.run)
app.command("schedule")(_run.schedule)
from pipeline.commands import plan as _plan  # noqa: E402
app.command("plan")(_plan.plan)
from pipeline.commands import render_pairs as _render_pairs  # noqa: E402
app.command("render-pairs")(_render_pairs.render_pairs)
from pipeline.commands import scenes as _scenes  # noqa: E402
app.command("scenes")(_scenes.scenes)
from pipeline.commands import mine as _mine  # noqa: E402
app.command("mine")(_mine.mine)
from pipeline.commands import ui as _ui  # noqa: E402
app.command("ui")(_ui.ui)


def main() -> None:
    """The console script: the command under supervision (pipeline.supervise); a command stopped by
    Ctrl-C, SIGTERM or SIGHUP keeps its finished work and exits with 128 + the signal number."""
    import os
    import sys

    from pipeline.supervise import supervised_command

    with supervised_command() as state:
        try:
            app()
        except SystemExit as exit_:
            code = exit_.code
        except KeyboardInterrupt:
            code = 1
        else:
            code = 0
    if state.signum is not None:
        typer.echo(f"stopped by {signal_name(state.signum)}: finished work is kept; run the same command "
                   "again to resume", err=True)
        # Everything is already stopped and saved (lock released, children gone, Prefect events
        # sent); skip the interpreter's own teardown, which takes seconds after an interrupt.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + state.signum)
    sys.exit(code)


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


if __name__ == "__main__":
    main()
