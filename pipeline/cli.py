"""The `crocopipe` command line. Commands import prefect, torch and GL lazily, inside the command,
so that `crocopipe --help` is fast and Prefect is configured (pipeline.prefect_env) before import."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.splitlines()[0])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
