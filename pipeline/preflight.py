"""Optional packages a config asks for, checked before any lock, server or worker starts.

habitat-sim (``backend = "habitat"``) and prefect-dask (``task_runner = "dask"``) are optional
installs; a config that needs one that is missing is a bad-input error (exit 2) with the install
command README.md gives, not a task that Prefect starts and retries.
"""

from __future__ import annotations

import importlib.util

from pipeline.config import ConfigError, CorpusConfig

INSTALL_COMMANDS = {
    "habitat_sim": (
        'backend = "habitat"', "habitat-sim",
        "conda install habitat-sim headless -c conda-forge -c aihabitat (see docs/habitat.md)",
    ),
    "prefect_dask": ('task_runner = "dask"', "prefect-dask", "pip install -e '.[dask]'"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_packages(corpus: CorpusConfig) -> list[str]:
    """One line per optional package the [corpus] section needs and this Python lacks."""
    needed = []
    if corpus.backend == "habitat":
        needed.append("habitat_sim")
    if corpus.task_runner == "dask":
        needed.append("prefect_dask")
    lines = []
    for module in needed:
        if not _installed(module):
            setting, package, command = INSTALL_COMMANDS[module]
            lines.append(f"[corpus] {setting} needs {package}, which is not installed: {command}")
    return lines


def check_packages(corpus: CorpusConfig) -> None:
    """Raise ConfigError (exit 2 in the CLI) naming the first missing package and its install command."""
    lines = missing_packages(corpus)
    if lines:
        raise ConfigError("; ".join(lines))
