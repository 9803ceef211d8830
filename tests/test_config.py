"""Run config: loading, path resolution, identity hash and the user-facing error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_run_config

BASE = """
run_dir = "out"

[corpus]
seed = 1
pairs_per_scene = 4
pairs_per_shard = 2
val_fraction = 0.5

[corpus.scenes.procedural]
count = 2

[corpus.sampler]
width = 32
height = 32
"""


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_quickstart_config_is_valid_and_procedural_only():
    root = Path(__file__).resolve().parents[1]
    config = load_run_config(root / "configs" / "quickstart.toml")
    assert config.corpus.scenes.procedural is not None and config.corpus.scenes.procedural.count >= 4
    assert not config.corpus.scenes.uris and not config.corpus.scenes.datasets
    assert config.run_dir.is_absolute() and config.run_dir.parent == root / "runs"


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    mesh = tmp_path / "meshes" / "room.glb"
    path = write(tmp_path, BASE.replace("[corpus.scenes.procedural]", '[corpus.scenes]\nuris = ["meshes/room.glb", "procedural:9"]\n[corpus.scenes.procedural]'))
    monkeypatch.chdir("/")
    config = load_run_config(path)
    assert config.run_dir == tmp_path / "out"
    assert config.corpus.scenes.uris == [str(mesh), "procedural:9"]
    assert config.source == path.resolve()


def test_content_hash_ignores_execution_settings(tmp_path):
    a = load_run_config(write(tmp_path, BASE, "a.toml")).corpus
    b = load_run_config(write(tmp_path, BASE.replace("seed = 1", "seed = 1\nworkers = 7"), "b.toml")).corpus
    c = load_run_config(write(tmp_path, BASE.replace("width = 32", "width = 48"), "c.toml")).corpus
    assert a.workers != b.workers and a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()


@pytest.mark.parametrize(
    "text, expected",
    [
        (BASE.replace("seed = 1", "seed = 1\nsede = 2"), ["corpus.sede", "unknown key", "pairs_per_scene", "seed"]),
        (BASE.replace("width = 32", "width = 32\nwidht = 2"), ["corpus.sampler.widht", "unknown key", "hfov_deg"]),
        (BASE.replace("jpeg", "x") + "\n", None),
        (BASE.replace("pairs_per_shard = 2", "pairs_per_shard = 0"), ["corpus.pairs_per_shard = 0", "greater than or equal to 1"]),
        (BASE.replace("val_fraction = 0.5", "val_fraction = 1.5"), ["corpus.val_fraction = 1.5", "less than 1"]),
        (BASE.replace('[corpus]', '[corpus]\nimage_format = "bmp"'), ["corpus.image_format = 'bmp'", "'jpg' or 'png'"]),
        (BASE.replace('[corpus]', '[corpus]\nbackend = "vulkan"'), ["corpus.backend = 'vulkan': unknown renderer backend", "allowed: embedded, habitat"]),
        (BASE.replace("count = 2", "count = 2\n[corpus.scenes.datasets]"), None),
        (BASE.replace("pairs_per_scene = 4\n", ""), ["corpus.pairs_per_scene: required key is missing"]),
    ],
)
def test_errors_name_file_key_value_and_allowed(tmp_path, text, expected):
    path = write(tmp_path, text)
    if expected is None:  # only checks that the message names the file
        try:
            load_run_config(path)
        except ConfigError as err:
            assert str(path) in str(err)
        return
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message, message


def test_malformed_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"run\.toml: not valid TOML"):
        load_run_config(write(tmp_path, "run_dir = \n[corpus"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.toml")


def test_unknown_dataset_kind_lists_allowed(tmp_path):
    text = BASE.replace("[corpus.scenes.procedural]", '[[corpus.scenes.datasets]]\nroot = "d"\nkind = "hm4d"\n[corpus.scenes.procedural]')
    with pytest.raises(ConfigError, match=r"corpus\.scenes\.datasets\[0\]\.kind = 'hm4d'.*allowed: hm3d"):
        load_run_config(write(tmp_path, text))


def test_pretrain_and_evaluate_sections_are_wired(tmp_path):
    config = load_run_config(write(tmp_path, BASE + '\n[pretrain]\npreset = "test"\n\n[evaluate]\nsteps = 3\n'))
    assert config.pretrain is not None and config.pretrain.preset == "test"
    assert config.evaluate is not None and config.evaluate.steps == 3
    with pytest.raises(ConfigError, match=r"pretrain\.presett: unknown key"):
        load_run_config(write(tmp_path, BASE + '\n[pretrain]\npresett = "test"\n'))
