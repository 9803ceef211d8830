"""The command line itself: version, help as written, optional packages refused before Prefect."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pipeline.preflight as preflight
from pipeline.cli import app

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.toml"
runner = CliRunner()


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"crocopipe {metadata.version('crocopipe')}"
    short, long = runner.invoke(app, ["-h"]), runner.invoke(app, ["--help"])
    assert short.exit_code == 0 and short.output == long.output and "generate" in short.output


@pytest.mark.parametrize("command, section", [("generate", "[corpus]"), ("run", "[pretrain]"), ("run", "[evaluate]"),
                                              ("pretrain", "[pretrain]"), ("evaluate", "[evaluate]"), ("mine", "[mine]")])
def test_help_prints_section_names_literally(command, section):
    result = runner.invoke(app, [command, "-h"], terminal_width=200)
    assert result.exit_code == 0 and section in result.output and "\\[" not in result.output


def _config(tmp_path: Path, **corpus: str) -> Path:
    text = QUICKSTART.read_text().replace('run_dir = "../runs/quickstart"', f'run_dir = "{tmp_path / "run"}"')
    for key, value in corpus.items():
        text = text.replace(f'{key} = "embedded"' if key == "backend" else f'{key} = "threads"', f'{key} = "{value}"')
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", ["generate", "run"])
@pytest.mark.parametrize("setting, module, install", [
    ({"backend": "habitat"}, "habitat_sim", "conda install habitat-sim headless -c conda-forge -c aihabitat"),
    ({"task_runner": "dask"}, "prefect_dask", "pip install -e '.[dask]'"),
])
def test_missing_optional_package_exits_2_before_prefect(tmp_path, monkeypatch, command, setting, module, install):
    real = preflight._installed
    monkeypatch.setattr(preflight, "_installed", lambda name: False if name == module else real(name))
    result = runner.invoke(app, [command, str(_config(tmp_path, **setting))])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and install in lines[0] and lines[0].startswith("error: [corpus]")
    assert not (tmp_path / "run" / "prefect").exists() and not (tmp_path / "run" / "corpus").exists()
