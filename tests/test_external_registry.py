"""A new external dataset is its reader module plus its entry in evaluation/tasks.py.

A copy of the packages gets exactly those two changes (a toy depth dataset of .npy files); a run
config then names its section and its task, and the config (path keys resolved relative to the
file, required keys, unknown keys), planning, the job and the table all work through the
registry, with no other file touched."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("evaluation", "pipeline", "rendering", "training")

READER = '''"""A toy depth dataset: <root>/images.npy (N, H, W, 3) uint8 and <root>/depths.npy (N, H, W) metres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ToySource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(description="folder holding images.npy and depths.npy")
    test_count: int = Field(2, gt=0)


def _load(root: Path) -> tuple[np.ndarray, np.ndarray]:
    for name in ("images.npy", "depths.npy"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"toy dataset file not found: {root / name}")
    return np.load(root / "images.npy"), np.load(root / "depths.npy")


def check(section, task) -> None:
    _load(section.root)


def task_arrays(task, section, size, test_fraction):
    from evaluation.val_split import TaskArrays

    images, depths = _load(section.root)
    images, depths = images[:, :size, :size], depths[:, :size, :size].astype(np.float32)
    k = len(images) - section.test_count
    return (TaskArrays("depth", {"img1": images[:k], "depth": depths[:k]}),
            TaskArrays("depth", {"img1": images[k:], "depth": depths[k:]}), "toy: last images")


def table_note(task, how, zero_epe) -> str:
    return f"- {task.name}: the toy dataset, {how}."
'''

CONFIG = """
run_dir = "run"

[corpus]
pairs_per_scene = 2
pairs_per_shard = 2
[corpus.scenes.procedural]
count = 2

[pretrain]
preset = "test"

[evaluate]
tasks = ["toy_depth"]
methods = ["none"]
steps = 1
batch_size = 2
threads = 1
{section}
"""

SCRIPT = r'''
import json, sys
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.resolved import resolve_run

folder = Path(sys.argv[1])
out = {}
for name in ("missing", "unknown"):
    try:
        resolve_run(folder / f"{name}.toml", evaluate=True)
        out[name] = "accepted"
    except (ConfigError, ValueError) as err:
        out[name] = str(err)
run = resolve_run(folder / "run.toml", evaluate=True)
cfg, spec = run.evaluation.config, run.evaluation.spec
out["root"] = str(cfg.toy.root)
from evaluation.jobs import run_job
from evaluation.plan import plan_jobs
from evaluation.tables import write_tables

jobs = plan_jobs(run.layout, cfg)
out["jobs"] = [(j.method, j.task, j.seed) for j in jobs]
result, reused = run_job(jobs[0], str(run.layout.corpus_dir), cfg, spec)
out["result"] = {"n_train": result["n_train"], "n_test": result["n_test"], "split_by": result["split_by"],
                 "metrics": sorted(result["metrics"])}
tables = write_tables(run.run_dir, list(cfg.methods), list(cfg.tasks), list(cfg.seeds),
                      {"data": {"toy_depth": result["split_by"]}})
out["markdown"] = Path(tables["markdown"]).read_text()
print(json.dumps(out))
'''


def _with_toy_dataset(tree: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "evaluation" / "readers" / "toy.py").write_text(READER)
    tasks = tree / "evaluation" / "tasks.py"
    text = tasks.read_text()
    for anchor, addition in (
        ("from evaluation.readers import nyuv2, sintel\n", "from evaluation.readers import toy\n"),
        ("_EXTERNAL = (\n", '    ExternalDataset("toy", toy.ToySource, toy.check, toy.task_arrays, toy.table_note),\n'),
        ("_TASKS = (\n", '    Task("toy_depth", "depth", "toy", DEPTH_METRICS),\n'),
    ):
        assert text.count(anchor) == 1, anchor
        text = text.replace(anchor, anchor + addition)
    tasks.write_text(text)


def _changed_files(tree: Path) -> list[str]:
    changed = []
    for package in PACKAGES:
        for path in sorted((tree / package).rglob("*.py")):
            rel = path.relative_to(tree)
            if not (REPO / rel).is_file() or not filecmp.cmp(path, REPO / rel, shallow=False):
                changed.append(rel.as_posix())
    return changed


def test_the_registry_derives_each_section_and_refuses_unknown_names():
    from evaluation.config import EvaluateConfig
    from evaluation.tasks import EXTERNAL_DATASETS, get_task, external_dataset
    from evaluation.zero_shot import MEASURES

    nyuv2, sintel = EXTERNAL_DATASETS["nyuv2"], EXTERNAL_DATASETS["sintel"]
    assert (nyuv2.needs, nyuv2.path_keys) == ("labeled_mat and splits_mat", ("labeled_mat", "splits_mat"))
    assert (sintel.needs, sintel.path_keys) == ("root", ("root",))
    assert {name: EvaluateConfig.model_fields[name].annotation for name in EXTERNAL_DATASETS} == {
        name: d.section | None for name, d in EXTERNAL_DATASETS.items()}
    assert external_dataset(get_task("sintel_final")) is sintel
    with pytest.raises(ValueError, match="'depth' reads 'corpus', not an external dataset; known: nyuv2, sintel"):
        external_dataset(get_task("depth"))
    assert all(get_task(t).zero_shot and get_task(t).measure in MEASURES for t in ("correspondence", "cross_view_gain"))
    assert not get_task("depth").zero_shot


@pytest.mark.slow  # a fresh interpreter on a copy of the packages: ~10 s on the shared cores
def test_a_registered_dataset_runs_end_to_end_with_no_other_file_touched(tmp_path):
    import numpy as np

    tree = tmp_path / "tree"
    _with_toy_dataset(tree)
    assert _changed_files(tree) == ["evaluation/readers/toy.py", "evaluation/tasks.py"]

    work = tmp_path / "work"
    (work / "toy").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(work / "toy" / "images.npy", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8))
    np.save(work / "toy" / "depths.npy", rng.uniform(1.0, 3.0, (6, 32, 32)).astype(np.float32))
    (work / "run.toml").write_text(CONFIG.format(section='[evaluate.toy]\nroot = "toy"'))
    (work / "missing.toml").write_text(CONFIG.format(section=""))
    (work / "unknown.toml").write_text(CONFIG.format(section='[evaluate.toy]\nroot = "toy"\nfolder = "x"'))
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(work)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert "task 'toy_depth' needs an [evaluate.toy] section with root" in out["missing"]
    assert "evaluate.toy.folder: unknown key; allowed keys here: root, test_count" in out["unknown"]
    assert out["root"] == str(work / "toy")  # a path key, resolved relative to the config file
    assert out["jobs"] == [["none", "toy_depth", 0]]
    assert out["result"]["n_train"] == 4 and out["result"]["n_test"] == 2
    assert out["result"]["split_by"] == "toy: last images" and "abs_rel" in out["result"]["metrics"]
    assert "- toy_depth: the toy dataset, toy: last images." in out["markdown"]
