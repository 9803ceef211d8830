"""How many CPU cores this process may use: the one figure worker-count defaults are derived from."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores in this process's affinity mask (container CPU sets narrow it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
