"""Configure Prefect for the embedded default *before* prefect is imported.

Prefect reads its settings when first imported, so the CLI calls :func:`configure_prefect` with the
run folder first and imports prefect (and any module that imports it) only afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EPHEMERAL_STARTUP_TIMEOUT_S = "600"


def configure_prefect(home: Path) -> Path:
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
    return resolved
