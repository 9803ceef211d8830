"""PNG figures inside Prefect markdown artifacts, so the UI shows them without the run folder.

Prefect's image artifact takes a URL and a finished run's files are not served anywhere, so the
PNG travels in the markdown itself as a ``data:`` URI (the figures are tens of KiB).
"""

from __future__ import annotations

import base64
from pathlib import Path

MAX_EMBEDDED_BYTES = 2 << 20  # larger figures are named by path only


def png_markdown(title: str, path: Path) -> str:
    """``### title`` + the PNG as an inline image (or its path when missing or too large)."""
    path = Path(path)
    if not path.is_file():
        return f"### {title}\n\n(missing: `{path}`)\n"
    data = path.read_bytes()
    if len(data) > MAX_EMBEDDED_BYTES:
        return f"### {title}\n\n`{path}` ({len(data) >> 10} KiB, not embedded)\n"
    encoded = base64.b64encode(data).decode("ascii")
    return f"### {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n`{path}`\n"


def markdown_cell(text: object) -> str:
    """A table cell that renders as written: a leading '>' is not a blockquote, '|' not a column."""
    value = str(text).replace("|", "\\|")
    return "\\" + value if value.startswith((">", "#", "-", "+", "*")) else value
