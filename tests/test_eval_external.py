"""The external-dataset tasks (nyuv2, sintel_clean, sintel_final) on tiny files in the official formats."""

import json
from pathlib import Path

import numpy as np
import pytest

from external_files import write_nyuv2, write_nyuv2_splits, write_sintel_scene
from evaluation.external import resize_center_crop
from evaluation.config import EvaluateConfig
from evaluation.readers.nyuv2 import NYUv2Source, nyuv2_arrays
from evaluation.readers.sintel import SintelSource, sintel_arrays
from rendering.layout import RunLayout
from test_eval_flow import _checkpoint

H, W = 48, 64  # NYUv2 at 1/10 of 480 x 640
SIZE = 32  # the `test` preset's input size
SINTEL_H, SINTEL_W = 40, 94  # Sintel's aspect ratio (436 x 1024), small
SINTEL_FLOW = (6.0, -2.0)  # constant flow, original pixels


def _nyuv2(root: Path, n: int = 10) -> NYUv2Source:
    rng = np.random.default_rng(0)
    images, depths = [], []
    for i in range(n):
        image = rng.integers(0, 200, (H, W, 3), dtype=np.uint8)
        # outside Eigen's crop (rows 45:471, columns 41:601 of 480 x 640 -> 4:47, 4:60 here)
        image[:4] = image[47:] = image[:, :4] = image[:, 60:] = 255
        depth = np.tile(np.linspace(1.0, 4.0 + i, W, dtype=np.float32), (H, 1))
        depth[:, -3:] = 12.0  # beyond max_depth_m (10 m): never trained on nor scored
        images.append(image)
        depths.append(depth)
    write_nyuv2(root / "nyu_depth_v2_labeled.mat", images, depths)
    write_nyuv2_splits(root / "splits.mat", train=[1, 2, 3, 4, 5, 6], test=[7, 8, 9, 10])
    return NYUv2Source(labeled_mat=root / "nyu_depth_v2_labeled.mat", splits_mat=root / "splits.mat")


def _sintel(root: Path, scenes=("alley_1", "bamboo_2", "cave_4")) -> SintelSource:
    rng = np.random.default_rng(1)
    flow = np.empty((SINTEL_H, SINTEL_W, 2), np.float32)
    flow[...] = SINTEL_FLOW
    invalid = np.zeros((SINTEL_H, SINTEL_W), np.uint8)
    invalid[:, : SINTEL_W // 2] = 255  # left half invalid in frame 1
    occluded = np.full((SINTEL_H, SINTEL_W), 255, np.uint8)  # occluded pixels are still scored
    for scene in scenes:
        frames = [rng.integers(0, 255, (SINTEL_H, SINTEL_W, 3), dtype=np.uint8) for _ in range(3)]
        write_sintel_scene(root, scene, frames, [flow, flow],
                           masks={"invalid": {1: invalid}, "occlusions": {1: occluded, 2: occluded}})
    return SintelSource(root=root)


def test_resize_center_crop_keeps_the_centre():
    image = np.zeros((20, 40), np.uint8)
    image[:, 10:30] = 1  # the centre square
    out, sx, sy = resize_center_crop(image, 10, nearest=True)
    assert out.shape == (10, 10) and out.all()
    assert sx == sy == 0.5


def test_nyuv2_arrays_use_official_split_eigen_crop_and_depth_cap(tmp_path):
    train, test, how = nyuv2_arrays(_nyuv2(tmp_path), SIZE)
    assert how == "nyuv2 official split"
    assert len(train) == 6 and len(test) == 4
    assert train.arrays["img1"].shape == (6, SIZE, SIZE, 3) and test.arrays["depth"].shape == (4, SIZE, SIZE)
    assert train.arrays["img1"].max() < 255  # the white rows outside the Eigen crop are gone
    depth = test.arrays["depth"]
    assert (depth == 0).any() and depth.max() <= 10.0  # > max_depth_m -> not scored
    assert np.all(depth[:, :, : SIZE // 2] > 0)
    # test image 1 is file index 8 (1-based 8 -> 0-based 7): its far depth is 4 + 7 = 11 m before the cap
    assert depth[1][depth[1] > 0].max() > depth[0][depth[0] > 0].max()
    capped = NYUv2Source(labeled_mat=tmp_path / "nyu_depth_v2_labeled.mat", splits_mat=tmp_path / "splits.mat",
                         max_train=3, max_test=2)
    small_train, small_test, _ = nyuv2_arrays(capped, SIZE)
    assert len(small_train) == 3 and len(small_test) == 2
    assert np.array_equal(small_train.arrays["img1"][0], train.arrays["img1"][0])  # evenly spaced from the first


def test_sintel_arrays_split_by_scene_and_scale_flow(tmp_path):
    source = _sintel(tmp_path)
    train, test, how = sintel_arrays(source, "clean", SIZE, test_fraction=0.34)
    assert "cave_4" in how and len(train) == 4 and len(test) == 2  # 2 pairs per scene, last scene held out
    scale = SIZE / SINTEL_H
    flow = test.arrays["flow"]
    assert flow.shape == (2, SIZE, SIZE, 2)
    assert np.allclose(flow[..., 0], SINTEL_FLOW[0] * round(SINTEL_W * scale) / SINTEL_W, atol=1e-5)
    assert np.allclose(flow[..., 1], SINTEL_FLOW[1] * scale, atol=1e-5)
    assert test.to_original_px == pytest.approx(1 / scale, rel=0.02)
    valid = test.arrays["valid"]
    assert valid[1].all()  # frame 2: occluded everywhere, still scored (Sintel's "all" EPE)
    assert not valid[0].all() and valid[0].any()  # frame 1: the invalid half is excluded
    chosen = SintelSource(root=tmp_path, test_scenes=["alley_1"], max_train=3)
    train, test, how = sintel_arrays(chosen, "final", SIZE, test_fraction=0.5)
    assert "alley_1" in how and len(train) == 3 and len(test) == 2
    with pytest.raises(ValueError, match="not found"):
        sintel_arrays(SintelSource(root=tmp_path, test_scenes=["market_9"]), "clean", SIZE, 0.5)
    with pytest.raises(ValueError, match="none left to train on"):
        sintel_arrays(SintelSource(root=tmp_path, test_scenes=["alley_1", "bamboo_2", "cave_4"]), "clean", SIZE, 0.5)


def test_config_needs_the_dataset_section_and_resolves_paths(tmp_path):
    from pipeline.config import ConfigError, load_run_config

    config = tmp_path / "run.toml"
    base = 'run_dir = "run"\n[corpus]\npairs_per_scene = 2\npairs_per_shard = 2\n[corpus.scenes.procedural]\ncount = 2\n[pretrain]\npreset = "test"\n'
    config.write_text(base + '[evaluate]\ntasks = ["nyuv2"]\n')
    with pytest.raises(ConfigError, match=r"task 'nyuv2' needs an \[evaluate.nyuv2\] section"):
        load_run_config(config)
    config.write_text(base + '[evaluate]\ntasks = ["nyuv2", "sintel_final"]\n'
                      '[evaluate.nyuv2]\nlabeled_mat = "data/nyu.mat"\nsplits_mat = "/abs/splits.mat"\n'
                      '[evaluate.sintel]\nroot = "data/sintel"\n')
    cfg = load_run_config(config).evaluate
    assert cfg.nyuv2.labeled_mat == tmp_path / "data" / "nyu.mat"
    assert cfg.nyuv2.splits_mat == Path("/abs/splits.mat")
    assert cfg.sintel.root == tmp_path / "data" / "sintel"
    config.write_text(base + '[evaluate]\n[evaluate.sintel]\nroot = "s"\npass = "clean"\n')
    with pytest.raises(ConfigError, match="evaluate.sintel.pass: unknown key"):
        load_run_config(config)


def test_corpus_results_stay_valid_when_an_external_dataset_is_added(tmp_path):
    spec = {"img_size": 32}
    plain = EvaluateConfig()
    with_sintel = EvaluateConfig(tasks=["depth", "sintel_clean"], sintel=SintelSource(root=tmp_path))
    assert plain.fingerprint(spec, "depth") == with_sintel.fingerprint(spec, "depth")
    moved = EvaluateConfig(tasks=["sintel_clean"], sintel=SintelSource(root=tmp_path / "other"))
    assert with_sintel.fingerprint(spec, "sintel_clean") != moved.fingerprint(spec, "sintel_clean")


@pytest.mark.slow
def test_external_dataset_jobs_fill_the_table_beside_the_paper(tmp_path, one_torch_thread):
    from evaluation.jobs import run_job
    from evaluation.plan import pending_jobs, plan_jobs
    from evaluation.tables import write_tables
    from training.models import preset_spec

    run_dir = tmp_path / "run"
    _checkpoint(run_dir, "croco_v1")
    cfg = EvaluateConfig(tasks=["nyuv2", "sintel_clean", "sintel_final"], methods=["croco_v1", "none"],
                         steps=2, batch_size=2, nyuv2=_nyuv2(tmp_path), sintel=_sintel(tmp_path / "sintel"))
    spec = preset_spec("test").to_dict()
    jobs = plan_jobs(RunLayout(run_dir), cfg)  # no corpus needed for external-dataset tasks
    assert len(jobs) == 6 and len(pending_jobs(jobs, cfg, spec)) == 6
    for job in jobs:
        result, reused = run_job(job, str(run_dir / "corpus"), cfg, spec)
        assert not reused and result["task"] == job.task
    nyu = json.loads((run_dir / "eval" / "croco_v1" / "nyuv2" / "seed-0.json").read_text())
    assert nyu["n_train"] == 6 and nyu["n_test"] == 4 and 0 <= nyu["metrics"]["delta1"] <= 1
    flow = json.loads((run_dir / "eval" / "none" / "sintel_final" / "seed-0.json").read_text())
    assert flow["metrics"]["epe_original_px"] == pytest.approx(flow["metrics"]["epe"] * SINTEL_H / SIZE, rel=0.02)
    scale = SIZE / SINTEL_H  # the constant flow, resized: what predicting no motion misses
    zero = np.hypot(SINTEL_FLOW[0] * round(SINTEL_W * scale) / SINTEL_W, SINTEL_FLOW[1] * scale)
    assert flow["metrics"]["zero_flow_epe"] == pytest.approx(zero, rel=1e-5)
    assert pending_jobs(jobs, cfg, spec) == []
    assert run_job(jobs[0], str(run_dir / "corpus"), cfg, spec)[1]  # second time: reused

    out = write_tables(run_dir, list(cfg.methods), list(cfg.tasks), list(cfg.seeds),
                       {"data": {"sintel_clean": "sintel scenes (test: cave_4)"}})
    md = Path(out["markdown"]).read_text()
    croco_row = next(line for line in md.splitlines() if line.startswith("| CroCo v1"))
    cells = [c.strip() for c in croco_row.strip("|").split("|")]
    header = [c.strip() for c in next(l for l in md.splitlines() if l.startswith("| method")).strip("|").split("|")]
    assert cells[header.index("paper: δ1 (%)")] == "85.6"
    assert [cells[i] for i, h in enumerate(header) if h == "paper: EPE (orig. px)"] == ["3.00", "3.60"]
    assert "nan" not in croco_row and all(cells)
    assert "official test split" in md and "test: cave_4" in md
    assert f"predicting zero flow gives EPE {zero:.3f} px" in md
    rows = [r for r in out["rows"] if r["task"] == "sintel_final" and r["metric"] == "epe_original_px"]
    assert {r["method"]: r["paper"] for r in rows} == {"croco_v1": "3.60", "none": ""}


def test_missing_or_corrupt_dataset_fails_before_any_work(tmp_path):
    from evaluation.plan import ExternalDataError, plan_jobs

    run_dir = tmp_path / "run"
    missing = EvaluateConfig(tasks=["nyuv2"], methods=["none"],
                             nyuv2=NYUv2Source(labeled_mat=tmp_path / "nope.mat", splits_mat=tmp_path / "s.mat"))
    with pytest.raises(ExternalDataError, match=r"\[evaluate.nyuv2\]: NYUv2 file not found: .*nope.mat"):
        plan_jobs(RunLayout(run_dir), missing)
    (tmp_path / "nope.mat").write_bytes(b"not hdf5")
    with pytest.raises(ExternalDataError, match="not an HDF5"):
        plan_jobs(RunLayout(run_dir), missing)
    sintel = _sintel(tmp_path / "sintel", scenes=("alley_1", "cave_4"))
    flo = tmp_path / "sintel" / "training" / "flow" / "alley_1" / "frame_0001.flo"
    flo.write_bytes(flo.read_bytes()[:-16])  # truncated: found when the data is read
    from evaluation.readers.sintel import sintel_arrays

    with pytest.raises(ValueError, match=r"frame_0001.flo: .*\(truncated\?\)"):
        sintel_arrays(sintel, "clean", SIZE, 0.5)
    (tmp_path / "sintel" / "training" / "final").rename(tmp_path / "sintel" / "training" / "moved")
    no_final = EvaluateConfig(tasks=["sintel_final"], methods=["none"], sintel=sintel)
    with pytest.raises(ExternalDataError, match=r"\[evaluate.sintel\] \(task sintel_final\): Sintel folder not found"):
        plan_jobs(RunLayout(run_dir), no_final)
    assert not (run_dir / "eval").exists()
