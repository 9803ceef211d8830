"""Configure Prefect for the embedded default *before* prefect is imported.

Prefect reads its settings when first imported, so the CLI calls :func:`configure_prefect` with the
run folder first and imports prefect (and any module that imports it) only afterwards.

Prefect's own log lines (flow and task states, server start and stop) go to ``<PREFECT_HOME>/
prefect.log`` and to the run's Prefect database, not to the terminal, where the command draws its
own progress display; ``verbose`` also prints them on stderr. A user's own
PREFECT_LOGGING_SETTINGS_PATH is kept.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EPHEMERAL_STARTUP_TIMEOUT_S = "600"


LOG_FILE = "prefect.log"
LOGGING_CONFIG_FILE = "logging.yml"

# Prefect's default logging config (prefect/logging/logging.yml) with its console handler replaced
# by a file handler; "$$" is a literal "$" for Prefect's template substitution.
_LOGGING_YAML = """\
version: 1
disable_existing_loggers: False
formatters:
  standard:
    (): prefect.logging.formatters.PrefectFormatter
    format: "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
    flow_run_fmt: "%(asctime)s.%(msecs)03d | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s"
    task_run_fmt: "%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s"
    datefmt: "%Y-%m-%d %H:%M:%S"
handlers:
  file:
    level: 0
    class: logging.FileHandler
    formatter: standard
    filename: {log_file}
    encoding: utf-8
    delay: True
  console:
    level: 0
    class: prefect.logging.handlers.PrefectConsoleHandler
    formatter: standard
    stream: ext://sys.stderr
  api:
    level: 0
    class: prefect.logging.handlers.APILogHandler
  worker_api:
    level: 0
    class: prefect.logging.handlers.WorkerAPILogHandler
loggers:
  prefect:
    level: "${{PREFECT_LOGGING_LEVEL}}"
  prefect.extra:
    level: "${{PREFECT_LOGGING_LEVEL}}"
    handlers: [api]
    propagate: false
  prefect.flow_runs:
    level: NOTSET
    handlers: [api]
  prefect.task_runs:
    level: NOTSET
    handlers: [api]
  prefect.workers:
    level: NOTSET
    handlers: [worker_api]
  prefect.server:
    level: "${{PREFECT_SERVER_LOGGING_LEVEL}}"
  prefect.client:
    level: "${{PREFECT_LOGGING_LEVEL}}"
  prefect._internal:
    level: "${{PREFECT_INTERNAL_LOGGING_LEVEL}}"
    propagate: false
    handlers: {handlers}
  uvicorn:
    level: "${{PREFECT_SERVER_LOGGING_LEVEL}}"
    handlers: {handlers}
    propagate: false
  fastapi:
    level: "${{PREFECT_SERVER_LOGGING_LEVEL}}"
    handlers: {handlers}
    propagate: false
root:
  level: WARNING
  handlers: {handlers}
"""


def write_logging_config(home: Path, verbose: bool = False) -> Path:
    """Prefect's logging config for this home: its log lines to ``home/prefect.log`` (+ stderr)."""
    handlers = "[file, console]" if verbose else "[file]"
    log_file = str(home / LOG_FILE).replace("$", "$$")
    text = _LOGGING_YAML.format(log_file=json_string(log_file), handlers=handlers)
    from rendering.atomic import atomic_write_text

    path = home / LOGGING_CONFIG_FILE
    atomic_write_text(path, text)
    return path


def json_string(text: str) -> str:
    """A YAML-safe double-quoted string (JSON strings are valid YAML)."""
    import json

    return json.dumps(text)


def configure_prefect(home: Path, verbose: bool = False) -> Path:
    """Point Prefect at an absolute PREFECT_HOME, turn analytics off, allow a slow server start.

    A user who set PREFECT_API_URL (a real Prefect server) keeps it: only the embedded default's
    settings are filled in. Returns the PREFECT_HOME in force.
    """
    home = Path(home).expanduser().resolve()
    if "prefect" in sys.modules and os.environ.get("PREFECT_HOME") not in (None, str(home)):
        raise RuntimeError(
            "prefect was imported before its home was configured; "
            f"PREFECT_HOME is {os.environ.get('PREFECT_HOME')!r}, wanted {str(home)!r}"
        )
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S)
    resolved = Path(os.environ["PREFECT_HOME"])
    resolved.mkdir(parents=True, exist_ok=True)
    if "PREFECT_LOGGING_SETTINGS_PATH" not in os.environ or os.environ.get("CROCOPIPE_LOGGING_CONFIG") == "1":
        os.environ["PREFECT_LOGGING_SETTINGS_PATH"] = str(write_logging_config(resolved, verbose))
        os.environ["CROCOPIPE_LOGGING_CONFIG"] = "1"  # ours: a later call may rewrite it
    return resolved
