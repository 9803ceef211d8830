"""Which task failures Prefect retries: transient ones only.

A bad scene file, a corrupt checkpoint or a bad value fails the same way on every attempt, so
retrying it only repeats tracebacks; a worker process that died, a full disk or a lost GL context
may not. Tasks pass :func:`transient_only` as ``retry_condition_fn``.
"""

from __future__ import annotations

# ValueError covers SceneLoadError, ConfigError, UnreadableCheckpointError and the other
# bad-input errors of this package.
DETERMINISTIC_ERRORS = (ValueError, TypeError, KeyError, AssertionError, FileNotFoundError)


def transient_only(task, task_run, state) -> bool:
    """Prefect retry condition: retry unless the task's exception is deterministic."""
    try:
        state.result()
    except DETERMINISTIC_ERRORS:
        return False
    except Exception:
        return True
    return True
