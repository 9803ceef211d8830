"""pipeline.prefect_template: a new run folder's Prefect database starts from a migrated, empty
template; an existing database is never touched, a template holding runs is never saved, and an
unsound one is removed instead of being used."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing

import pytest

from pipeline import prefect_template


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROCOPIPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_database(path, flow_runs=0):
    """A database shaped like a started server's: the migration stamp, a block type, and an
    (empty unless ``flow_runs``) run table."""
    with closing(sqlite3.connect(path)) as db:
        db.executescript("CREATE TABLE alembic_version (version_num TEXT); INSERT INTO alembic_version VALUES ('abc');"
                         "CREATE TABLE block_type (slug TEXT); INSERT INTO block_type VALUES ('local-file-system');"
                         "CREATE TABLE flow_run (id TEXT);")
        db.executemany("INSERT INTO flow_run VALUES (?)", [(str(i),) for i in range(flow_runs)])
        db.commit()
    return path


def test_a_missing_database_is_seeded_from_the_template_and_an_existing_one_is_left_alone(tmp_path, cache):
    database = tmp_path / "home" / "prefect.db"
    database.parent.mkdir()
    assert prefect_template.seed_database(database)  # no template yet: the server creates it
    assert not database.exists()

    assert prefect_template.save_template(make_database(tmp_path / "started.db"))
    template = prefect_template.template_path()
    assert template.parent == cache / "prefect-db" and template.is_file()
    assert not prefect_template.seed_database(database)
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT slug FROM block_type").fetchall() == [("local-file-system",)]
    assert [p.name for p in database.parent.iterdir()] == ["prefect.db"]  # no temporary left

    existing = tmp_path / "other" / "prefect.db"
    existing.parent.mkdir()
    make_database(existing, flow_runs=3)
    before = existing.read_bytes()
    assert not prefect_template.seed_database(existing)
    assert existing.read_bytes() == before


def test_a_snapshot_with_runs_is_not_saved_and_a_saved_template_is_kept(tmp_path, cache):
    assert not prefect_template.save_template(make_database(tmp_path / "used.db", flow_runs=1))
    assert not prefect_template.template_path().exists()

    assert prefect_template.save_template(make_database(tmp_path / "first.db"))
    saved = prefect_template.template_path().read_bytes()
    second = make_database(tmp_path / "second.db")
    with closing(sqlite3.connect(second)) as db:
        db.execute("INSERT INTO block_type VALUES ('another')")
        db.commit()
    assert not prefect_template.save_template(second)
    assert prefect_template.template_path().read_bytes() == saved
    with closing(sqlite3.connect(prefect_template.template_path())) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one self-contained file


@pytest.mark.parametrize("damage", ["truncated", "not a database", "holds a run"])
def test_an_unsound_template_is_removed_and_not_used(tmp_path, cache, damage):
    template = prefect_template.template_path()
    template.parent.mkdir(parents=True)
    if damage == "holds a run":
        make_database(template, flow_runs=1)
    else:
        whole = make_database(tmp_path / "whole.db").read_bytes()
        template.write_bytes(whole[: len(whole) // 3] if damage == "truncated" else b"\x00garbage" * 512)
    database = tmp_path / "prefect.db"
    assert prefect_template.seed_database(database)  # the server creates the database itself
    assert not database.exists() and not template.exists()


SCRIPT = textwrap.dedent("""
    import json, sqlite3, sys
    from pathlib import Path
    from pipeline.prefect_env import configure_prefect
    from pipeline import prefect_template

    first, second = Path(sys.argv[1]), Path(sys.argv[2])
    configure_prefect(first)
    from prefect.settings import temporary_settings, PREFECT_HOME
    from pipeline.flows.history import command_api
    with command_api():
        pass
    template = prefect_template.template_path()
    report = {"saved": template.is_file(), "startup_only": prefect_template._is_startup_only(template)}
    with sqlite3.connect(template) as db:  # mark it, to see that the second home starts from it
        db.execute("PRAGMA user_version = 4242")
    with temporary_settings({PREFECT_HOME: second}):
        with command_api() as url:
            from prefect.client.orchestration import get_client
            with get_client(sync_client=True) as client:
                report["flows_readable"] = client.read_flows() == []
    with sqlite3.connect(second / "prefect.db") as db:
        report["second_user_version"] = db.execute("PRAGMA user_version").fetchone()[0]
        report["second_version"] = db.execute("SELECT version_num FROM alembic_version").fetchall()
    with sqlite3.connect(first / "prefect.db") as db:
        report["first_version"] = db.execute("SELECT version_num FROM alembic_version").fetchall()
    print(json.dumps(report))
""")


@pytest.mark.slow  # two embedded server starts, one of them migrating a new database
def test_the_first_new_database_becomes_the_template_of_the_next_run_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CROCOPIPE_"))}
    env["CROCOPIPE_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "a"), str(tmp_path / "b")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["saved"] and report["startup_only"]
    assert report["second_user_version"] == 4242  # copied from the template, not migrated anew
    assert report["second_version"] == report["first_version"] and report["flows_readable"]
