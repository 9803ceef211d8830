"""regenerate refuses bad manifest rows by row, key and value before writing anything, and its own
partial output never blocks its retry; an unreadable checkpoint is one line naming file and cause."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.corpus.verify import verify_corpus
from test_corpus import build_corpus, write_config


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return build_corpus(write_config(tmp_path_factory.mktemp("regen"))) / "manifest.parquet"


def _with_row_changed(manifest: Path, target: Path, row: int, column: str, value) -> Path:
    table = pq.read_table(manifest).to_pylist()
    table[row][column] = value
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), target)
    return target


def test_a_nan_pose_row_is_named_and_the_fixed_manifest_then_succeeds(manifest: Path, tmp_path: Path):
    rows = pq.read_table(manifest).to_pylist()
    pose = list(rows[3]["cam2world1"])
    pose[7] = float("nan")
    bad = _with_row_changed(manifest, tmp_path / "bad.parquet", 3, "cam2world1", pose)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["regenerate", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert f"row 3 (key {rows[3]['key']!r}): cam2world1[7] = nan is not finite" in result.output
    assert "Traceback" not in result.output
    assert not (out / "shards").exists() and not (out / "manifest.parquet").exists()
    # the user fixes the manifest; the same command, same --out, succeeds
    fixed = _with_row_changed(manifest, tmp_path / "bad.parquet", 3, "cam2world1", rows[3]["cam2world1"])
    result = CliRunner().invoke(app, ["regenerate", str(fixed), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert verify_corpus(out).ok


def test_a_missing_scene_file_is_named(manifest: Path, tmp_path: Path):
    bad = _with_row_changed(manifest, tmp_path / "m.parquet", 5, "scene_uri", str(tmp_path / "gone.glb"))
    result = CliRunner().invoke(app, ["regenerate", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "row 5" in result.output and "gone.glb" in result.output and "does not exist" in result.output


def test_partial_output_of_a_failed_run_does_not_block_its_retry(manifest: Path, tmp_path: Path, monkeypatch):
    import pipeline.corpus.regenerate as regenerate

    real, calls = regenerate.render_pair_at_poses, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(regenerate, "render_pair_at_poses", failing)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        regenerate.regenerate_corpus(manifest, out)
    assert list((out / "shards").rglob("*.tar"))  # the first shard was written before the failure
    monkeypatch.setattr(regenerate, "render_pair_at_poses", real)
    result = CliRunner().invoke(app, ["regenerate", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert verify_corpus(out).ok and not (out / ".regenerate-incomplete").exists()
    # a finished corpus is still never overwritten
    again = CliRunner().invoke(app, ["regenerate", str(manifest), "--out", str(out)])
    assert again.exit_code == 2 and "already holds a corpus" in again.output


@pytest.mark.parametrize("content, cause", [
    (b"", "the file is empty (0 bytes)"),
    (b"<html>404</html>", "not a PyTorch checkpoint (it starts with b'<html>40')"),
    (None, "not a complete PyTorch checkpoint (truncated or corrupt zip archive)"),
])
def test_an_unreadable_checkpoint_is_one_line_without_unpickling_advice(tmp_path: Path, content, cause):
    import torch

    from training.models.loading import UnreadableCheckpointError, read_checkpoint

    path = tmp_path / "model.pt"
    if content is None:
        torch.save({"model": {"w": torch.zeros(64)}}, path)
        content = path.read_bytes()[:-100]
    path.write_bytes(content)
    with pytest.raises(UnreadableCheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert message == f"checkpoint {path} is unreadable: {cause}" or message.startswith(f"checkpoint {path} is unreadable: {cause}")
    assert "\n" not in message and "weights_only" not in message and "trust" not in message


class Foreign:
    """An object a weights file should not hold (unpickling it would run its class's code)."""


def test_a_checkpoint_with_foreign_objects_is_refused_without_advice(tmp_path: Path):
    import torch

    from training.models.loading import UnreadableCheckpointError, read_checkpoint

    path = tmp_path / "model.pt"
    torch.save({"model": Foreign()}, path)  # a global the safe loader does not allow
    with pytest.raises(UnreadableCheckpointError, match="refused as weights") as err:
        read_checkpoint(path)
    assert "weights_only" not in str(err.value) and "safe_globals" not in str(err.value)


def test_evaluate_with_a_corrupt_model_pt_is_one_line_and_starts_nothing(tmp_path: Path):
    config = write_config(tmp_path, extra="")
    config.write_text(config.read_text() + '\n[pretrain]\npreset = "tiny"\nmethods = ["croco_v1"]\n'
                      '[evaluate]\nmethods = ["croco_v1"]\ntasks = ["depth"]\nseeds = [0]\n')
    build_corpus(config)
    weights = tmp_path / "run" / "pretrain" / "croco_v1" / "model.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"PK\x03\x04 truncated")
    result = CliRunner().invoke(app, ["evaluate", str(config)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"checkpoint {weights} is unreadable: not a complete PyTorch checkpoint (truncated or corrupt "
                     "zip archive); re-copy or re-create it"]
    assert not (tmp_path / "run" / "prefect").exists()  # no Prefect server was started, nothing retried
