"""Flow-run names people can read in the Prefect UI and logs: `generate quickstart`,
`pretrain croco_v1, croco_v2`, `run quickstart.toml` instead of generated adjective-animal pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def flow_run_namer(kind: str, parameter: str) -> Callable[[], str]:
    """A flow_run_name callable: ``kind`` + the parameter (a list joined, a path's last part)."""

    def name() -> str:
        from prefect.runtime import flow_run

        value = flow_run.parameters.get(parameter)
        if isinstance(value, (list, tuple)):
            text = ", ".join(map(str, value))
        else:
            text = Path(str(value)).name if value else ""
        return f"{kind} {text}".strip()

    return name
