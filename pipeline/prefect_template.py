"""A migrated, empty Prefect database to start a new run folder's embedded server from.

Prefect's server creates a missing SQLite database by running every one of its migrations, about
7 s of CPU on a 2-core VM and the larger half of the first command's fixed cost in a new run
folder. The first server that creates one is snapshotted right after it answers (migrations and
block registration done, no run recorded yet) into the user's cache, one file per Prefect
version; a later new run folder starts from a copy of it, and Prefect's own start still checks
the migrations and registers the blocks. A snapshot holding anything but the schema and the block
registry is not kept, and a template that SQLite does not find sound is removed and not used.
Standard library only: pipeline.early_server uses it before Prefect is imported.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from rendering.atomic import atomic_path

DATABASE_FILE = "prefect.db"
# the only tables a freshly started server fills: the migration stamp and the block registry
STARTUP_TABLES = frozenset({"alembic_version", "block_type", "block_schema", "block_schema_reference"})


class _NotStartupOnly(Exception):
    """The snapshot holds more than a server's start writes: not kept."""


def template_folder() -> Path:
    """``$CROCOPIPE_CACHE_DIR/prefect-db``, else ``$XDG_CACHE_HOME/crocopipe/prefect-db`` (``~/.cache``)."""
    explicit = os.environ.get("CROCOPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit) / "prefect-db"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crocopipe" / "prefect-db"


def template_path() -> Path:
    """This Prefect version's template (a different version has different migrations)."""
    return template_folder() / f"prefect-{importlib.metadata.version('prefect')}.db"


def database_of(home: str | os.PathLike) -> Path:
    """The embedded server's SQLite file under a PREFECT_HOME (Prefect's default location)."""
    return Path(home) / DATABASE_FILE


def _absent(database: Path) -> bool:
    return not any(Path(f"{database}{suffix}").exists() for suffix in ("", "-wal", "-shm"))


def _startup_only(connection: sqlite3.Connection) -> bool:
    """The database holds a migration stamp and nothing outside the startup tables."""
    if connection.execute("PRAGMA quick_check").fetchone() != ("ok",):
        return False
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if "alembic_version" not in tables or not connection.execute("SELECT 1 FROM alembic_version").fetchone():
        return False
    return all(connection.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone() is None
               for name in tables if name not in STARTUP_TABLES and not name.startswith("sqlite_"))


def _is_startup_only(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            return _startup_only(connection)
    except sqlite3.Error:
        return False


def seed_database(database: Path) -> bool:
    """Copy the template to a missing ``database``. True when the server will create the database
    itself (nothing there and no sound template): then call :func:`save_template` once it answers.
    An existing database is never touched."""
    if not _absent(database):
        return False
    try:
        template = template_path()
    except importlib.metadata.PackageNotFoundError:
        return True
    if not template.is_file():
        return True
    if not _is_startup_only(template):
        template.unlink(missing_ok=True)
        return True
    try:
        with atomic_path(database) as partial:
            shutil.copyfile(template, partial)
    except OSError:
        return True
    return False


def save_template(database: Path) -> bool:
    """Snapshot a just-created database as the template when it holds nothing but what a server's
    start writes; a template already there is kept. True when saved."""
    try:
        template = template_path()
        template.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, importlib.metadata.PackageNotFoundError):
        return False
    if template.exists():
        return False
    try:
        with atomic_path(template) as partial:
            with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as source, \
                    closing(sqlite3.connect(partial)) as copy:
                source.backup(copy)  # a consistent snapshot even while the server runs
                copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file (Prefect turns WAL back on)
                if not _startup_only(copy):
                    raise _NotStartupOnly
    except (OSError, sqlite3.Error, _NotStartupOnly):
        return False
    return True
