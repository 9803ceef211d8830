"""The scene check, flat-view rejection and unit identity by content (plain functions, no Prefect)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from trimesh.visual import ColorVisuals

from pipeline.config import run_config_from_dict
from pipeline.corpus.build import CorpusStateError, check_corpus_dir, merge_corpus, prepare_corpus_dir
from pipeline.corpus.plan import plan_units, previous_assignment
from pipeline.corpus.scene_check import check_scenes, markdown, refused
from pipeline.corpus.unit import completed_unit, run_unit
from rendering.backend import SceneSpec
from rendering.pair import SCHEMA_VERSION
from rendering.shards import file_sha256
from scene_files import in_file_frame, lfs_pointer, multi_room, write

SAMPLER = {"width": 64, "height": 64, "screen_size": 0, "min_covis": 0.3, "max_candidates_per_reference": 30}


def grey_room() -> trimesh.Scene:
    """The flat in one grey: unlit, every view is a uniform patch (the untextured-scan case)."""
    scene = multi_room()
    for geom in scene.geometry.values():
        geom.visual = ColorVisuals(geom, face_colors=np.tile([128, 128, 128, 255], (len(geom.faces), 1)))
    return scene


def _corpus(tmp_path: Path, uris: list, **extra):
    data = {"run_dir": "run", "corpus": {"seed": 3, "pairs_per_scene": 2, "pairs_per_shard": 2, "sampler": SAMPLER,
                                          "scenes": {"uris": uris}, **extra}}
    return run_config_from_dict(data, tmp_path / "run.toml")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("mixed")
    write(multi_room(), root / "flat.glb")
    write(in_file_frame(multi_room(), "z"), root / "flat_z.obj")
    write(in_file_frame(multi_room(), "y", scale=0.001), root / "flat_mm.glb")
    write(grey_room(), root / "grey.ply")
    lfs_pointer(root / "pointer.glb")
    uris = ["procedural:0", "flat.glb", {"uri": "flat_z.obj", "up": "z"}, {"uri": "flat_z.obj", "name": "flat_z_as_y"},
            {"uri": "flat_mm.glb", "scale": "auto"}, {"uri": "grey.ply", "shading": "unlit"},
            {"uri": "grey.ply", "name": "grey_lit"}, "pointer.glb"]
    run = _corpus(root, uris)
    from pipeline.corpus.plan import resolve_scenes

    rows = check_scenes(resolve_scenes(run.corpus), run.corpus, root / "cache")
    (root / "check.md").write_text(markdown(rows))
    return root, rows


def test_scene_check_reports_every_scene_with_a_verdict(mixed):
    _, rows = mixed
    by_id = {r["scene_id"]: r for r in rows}
    ok = {r["scene_id"] for r in rows if r["verdict"] == "ok"}
    assert ok == {"proc-000000", "flat", "flat_z", "flat_mm", "grey_lit"}
    assert 'set up = "z"' in by_id["flat_z_as_y"]["reason"]
    assert "Git LFS pointer" in by_id["pointer"]["reason"]
    assert "little image information" in by_id["grey"]["reason"] and 'shading = "auto"' in by_id["grey"]["reason"]
    assert by_id["flat_mm"]["units"] == "auto: millimetres" and by_id["flat_mm"]["extent_m"] == "8.0 x 2.8 x 8.0"
    assert by_id["flat"]["triangles"] == 240 and by_id["flat"]["floor_m2"] > 20 and by_id["flat"]["textured"] == 0.0
    assert by_id["proc-000000"]["textured"] == 1.0 and by_id["proc-000000"]["information"] > 0.3
    assert by_id["grey_lit"]["information"] > by_id["grey"]["information"]
    for row in rows:
        assert row["load_s"] is not None and ("\n" not in row["reason"])


def test_scene_check_results_are_reused_per_scene_content(mixed, monkeypatch):
    root, rows = mixed
    import pipeline.corpus.scene_check as scene_check

    monkeypatch.setattr(scene_check, "check_scene", lambda *a: pytest.fail("a cached scene was checked again"))
    from pipeline.corpus.plan import resolve_scenes

    run = _corpus(root, ["procedural:0", "flat.glb"])
    again = check_scenes(resolve_scenes(run.corpus), run.corpus, root / "cache")
    assert [r["scene_id"] for r in again] == ["proc-000000", "flat"]
    assert again == [r for r in rows if r["scene_id"] in ("proc-000000", "flat")]


def test_flat_views_are_rejected_and_counted_and_shaded_views_pass(tmp_path: Path):
    from rendering.backends.embedded import EmbeddedRenderer
    from rendering.sampling import PairSamplingError, SamplerConfig, sample_pair

    path = write(grey_room(), tmp_path / "grey.glb")
    config = SamplerConfig(**{**SAMPLER, "max_references": 4})
    with EmbeddedRenderer() as renderer:
        unlit = SceneSpec("grey", str(path), shading="unlit")
        navigable = renderer.load_scene(unlit)
        with pytest.raises(PairSamplingError, match="reference_low_information=4") as err:
            sample_pair(renderer, navigable, unlit, 0, 0, config)
        assert err.value.rejections == {"reference_low_information": 4}
        lit = SceneSpec("grey", str(path), shading="auto")
        navigable = renderer.load_scene(lit)
        record = sample_pair(renderer, navigable, lit, 0, 0, SamplerConfig(**SAMPLER))
        again = sample_pair(renderer, navigable, lit, 0, 0, SamplerConfig(**SAMPLER))
    meta = record.meta()
    assert meta["schema_version"] == SCHEMA_VERSION == 3
    assert min(meta["information1"], meta["information2"]) >= SamplerConfig().min_image_information
    np.testing.assert_array_equal(record.img1, again.img1)  # the same view renders identically


def _build(run) -> dict[str, str]:
    """Render every unit of the plan (plain functions) and merge; returns shard path -> sha256."""
    corpus = run.corpus
    units = plan_units(corpus, previous=previous_assignment(run.layout.corpus.plan))
    prepare_corpus_dir(run.corpus_dir, corpus, units)
    reused = []
    for unit in units:
        summary = run_unit(unit.as_dict(), str(run.corpus_dir), corpus.model_dump_json())
        reused.append(summary["reused"])
    info = merge_corpus(run.corpus_dir, corpus, units, make_card=False)
    return {s["unit_id"]: (s["path"], s["sha256"]) for s in info["shards"]}, reused


def test_editing_the_scene_list_reuses_the_other_scenes_units(tmp_path: Path):
    first, reused = _build(_corpus(tmp_path, ["procedural:1", "procedural:2"]))
    assert reused == [False, False]
    # Remove the first scene: the second keeps its shard (same path, same bytes) and is not re-rendered.
    second, reused = _build(_corpus(tmp_path, ["procedural:2"]))
    assert reused == [True] and second == {"proc-000002-c0000": first["proc-000002-c0000"]}
    retired = sorted(p.relative_to(tmp_path / "run" / "corpus").as_posix()
                     for p in (tmp_path / "run" / "corpus" / "retired").rglob("*") if p.is_file())
    assert len(retired) == 2 and retired[0].startswith("retired/shards/train/pairs-000000-")  # kept, not deleted
    # Add a scene: it takes the free shard number; the existing unit is still re-used.
    third, reused = _build(_corpus(tmp_path, ["procedural:3", "procedural:2"], val_fraction=0.0))
    assert reused == [False, True] and third["proc-000002-c0000"] == first["proc-000002-c0000"]
    assert third["proc-000003-c0000"][0] == "shards/train/pairs-000000.tar"
    from pipeline.corpus.verify import verify_corpus

    assert verify_corpus(tmp_path / "run" / "corpus").ok
    # Settings that change every unit are still refused on this folder.
    with pytest.raises(CorpusStateError, match=r"different \[corpus\] config: its unit-shaping settings"):
        check_corpus_dir(tmp_path / "run" / "corpus", _corpus(tmp_path, ["procedural:2"], seed=4).corpus)
    plan = tmp_path / "run" / "corpus" / "plan.json"
    alone = plan_units(_corpus(tmp_path, ["procedural:2"]).corpus, previous=previous_assignment(plan))
    assert alone[0].shard_index == 1 and completed_unit(alone[0], tmp_path / "run" / "corpus", "") is not None
