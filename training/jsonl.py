"""Read an append-only JSON Lines log that a crash may have cut short.

A process killed (or a disk filled) in the middle of an append leaves a partial last line; that
line is dropped with a warning, and the next writer rewrites the file without it. Damage anywhere
else is not a torn append, so it is an error naming the file and line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class JsonlError(ValueError):
    """A JSON Lines file is damaged before its last line."""


def read_records(path: Path) -> tuple[list[dict], bool]:
    """(records, torn): every record of ``path``, and whether a partial last line was dropped."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    records: list[dict] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = all(not rest.strip() for rest in lines[number:])
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as err:
            if last:
                log.warning("%s: dropping a partial last line %d (%r...) left by an interrupted write",
                            path, number, line[:40])
                return records, True
            raise JsonlError(f"{path}, line {number}: not a JSON object ({err}); "
                             "only a torn last line can be repaired") from None
        if last and not text.endswith("\n"):  # valid JSON, but the write of its newline was cut
            log.warning("%s: last line %d lacks its newline (an interrupted write); kept", path, number)
        records.append(record)
    return records, False
