"""Scene dataset discovery on tiny copies of each dataset's folder layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from rendering.backend import SceneSpec
from rendering.scene_datasets import (
    DATASET_KINDS,
    DatasetError,
    discover,
    discover_scenes,
    habitat_stage_config,
    scene_split,
    slugify,
    split_by_scene,
)


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_hm3d_prefers_basis_glb_skips_semantic_and_records_split(tmp_path):
    _touch(
        tmp_path,
        "train/00000-kfPV7w3FaU5/kfPV7w3FaU5.basis.glb",
        "train/00000-kfPV7w3FaU5/kfPV7w3FaU5.glb",
        "train/00000-kfPV7w3FaU5/kfPV7w3FaU5.semantic.glb",
        "train/00000-kfPV7w3FaU5/kfPV7w3FaU5.basis.navmesh",
        "val/00800-TEEsavR23oF/TEEsavR23oF.glb",
        "minival/00800-TEEsavR23oF/TEEsavR23oF.basis.glb",
        "val/00801-empty/readme.txt",
    )
    with pytest.raises(DatasetError, match="00800-TEEsavR23oF"):  # the same scene in two splits
        discover("hm3d", tmp_path)
    (tmp_path / "minival/00800-TEEsavR23oF/TEEsavR23oF.basis.glb").unlink()
    scenes = discover("hm3d", tmp_path)
    assert [s.spec.scene_id for s in scenes] == ["hm3d-00000-kfPV7w3FaU5", "hm3d-00800-TEEsavR23oF"]
    first, second = scenes
    assert first.spec.uri.endswith("kfPV7w3FaU5.basis.glb") and first.split == "train"
    assert first.navmesh is not None and first.navmesh.name == "kfPV7w3FaU5.basis.navmesh"
    assert second.spec.uri.endswith("TEEsavR23oF.glb") and second.split == "val" and second.navmesh is None
    assert first.spec.up_axis == "z" and first.up_axis == "z"
    # a split folder as the root works too
    only_val = discover("hm3d", tmp_path / "val")
    assert [s.spec.scene_id for s in only_val] == ["hm3d-00800-TEEsavR23oF"] and only_val[0].split == "val"


def test_mp3d_gibson_scannet_replicacad_test_scenes_and_plain_folders(tmp_path):
    _touch(tmp_path / "mp3d", "17DRP5sb8fy/17DRP5sb8fy.glb", "17DRP5sb8fy/17DRP5sb8fy.navmesh", "17DRP5sb8fy/17DRP5sb8fy_semantic.ply", "notes/x.txt")
    _touch(tmp_path / "gibson", "Allensville.glb", "Allensville.navmesh", "Beechwood.glb")
    _touch(tmp_path / "scannet", "scans/scene0000_00/scene0000_00_vh_clean.glb", "scans/scene0001_01/scene0001_01.glb")
    _touch(tmp_path / "rcad", "stages/Baked_sc0_staging_00.glb", "stages/Baked_sc1_staging_12.glb", "stages/frl_apartment_stage.glb", "objects/chair.glb")
    _touch(tmp_path / "test_scenes", "apartment_1.glb", "skokloster-castle.glb", "van-gogh-room.glb", "van-gogh-room.navmesh")
    _touch(tmp_path / "plain", "a/b/room.v2.glb", "c.gltf", "a/ignore.obj")

    def ids(kind, folder):
        return [s.scene_id for s in discover_scenes(kind, tmp_path / folder)]

    assert ids("mp3d", "mp3d") == ["mp3d-17DRP5sb8fy"]
    assert discover("mp3d", tmp_path / "mp3d")[0].navmesh.name == "17DRP5sb8fy.navmesh"
    assert ids("gibson", "gibson") == ["gibson-Allensville", "gibson-Beechwood"]
    assert ids("scannet", "scannet") == ["scannet-scene0000_00", "scannet-scene0001_01"]
    assert ids("replicacad", "rcad") == ["replicacad-Baked_sc0_staging_00", "replicacad-Baked_sc1_staging_12"]
    assert discover("replicacad", tmp_path / "rcad")[0].spec.up_axis == "y"
    assert ids("habitat_test_scenes", "test_scenes") == ["habtest-apartment_1", "habtest-skokloster-castle", "habtest-van-gogh-room"]
    assert ids("glb", "plain") == ["glb-a-b-room-v2", "glb-c"]
    assert ids("meshes", "plain") == ["mesh-a-b-room-v2", "mesh-a-ignore", "mesh-c"]  # OBJ/PLY too
    folders = {"mp3d": "mp3d", "gibson": "gibson", "scannet": "scannet", "replicacad": "rcad",
               "habitat_test_scenes": "test_scenes", "glb": "plain", "meshes": "plain"}
    assert set(folders) | {"hm3d"} == set(DATASET_KINDS)
    expected_up = {"mp3d": "z", "gibson": "z", "scannet": "z", "habitat_test_scenes": "z", "replicacad": "y", "glb": "y",
                   "meshes": "y"}
    for kind, folder in folders.items():
        for scene in discover_scenes(kind, tmp_path / folder):
            assert "." not in scene.scene_id and Path(scene.uri).is_absolute()
            assert scene.up_axis == expected_up[kind], (kind, scene)


def test_ids_are_stable_and_sorted_whatever_the_creation_order(tmp_path):
    _touch(tmp_path / "one", "zeta.glb", "alpha.glb", "mid.glb")
    _touch(tmp_path / "two", "mid.glb", "zeta.glb", "alpha.glb")
    a = [s.scene_id for s in discover_scenes("gibson", tmp_path / "one")]
    b = [s.scene_id for s in discover_scenes("gibson", tmp_path / "two")]
    assert a == b == ["gibson-alpha", "gibson-mid", "gibson-zeta"]


def test_bad_roots_and_kinds_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset kind 'hm4d'"):
        discover_scenes("hm4d", tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        discover_scenes("mp3d", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no gibson scenes found"):
        discover_scenes("gibson", tmp_path / "empty")
    _touch(tmp_path / "clash", "a.b.glb", "a-b.glb")
    with pytest.raises(DatasetError, match="glb-a-b"):
        discover_scenes("glb", tmp_path / "clash")


def test_slugify():
    assert slugify("skokloster-castle") == "skokloster-castle"
    assert slugify("a b.c/d") == "a-b-c-d"
    with pytest.raises(DatasetError):
        slugify("...")


def test_split_by_scene_is_stable_per_scene_and_never_empty():
    scenes = [SceneSpec(f"hm3d-{i:05d}", f"/x/{i}.glb") for i in range(200)]
    split = split_by_scene(scenes, 0.1)
    assert 10 <= len(split["val"]) <= 30 and len(split["train"]) + len(split["val"]) == 200
    # adding scenes never moves an existing one
    more = split_by_scene(scenes + [SceneSpec(f"gibson-{i}", "/y.glb") for i in range(50)], 0.1)
    assert {s.scene_id for s in split["val"]} <= {s.scene_id for s in more["val"]}
    assert all(scene_split(s.scene_id, 0.1) == "val" for s in split["val"])
    # another salt gives another (still stable) split
    assert {s.scene_id for s in split_by_scene(scenes, 0.1, salt="b")["val"]} != {s.scene_id for s in split["val"]}
    # tiny datasets: at least one scene each side
    two = split_by_scene(scenes[:2], 0.01)
    assert len(two["val"]) == 1 and len(two["train"]) == 1
    assert split_by_scene(scenes[:2], 0.01) == two
    assert split_by_scene(scenes[:3], 0.0)["val"] == []
    with pytest.raises(ValueError, match="duplicate"):
        split_by_scene([scenes[0], scenes[0]], 0.5)
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_scene(scenes, 1.5)


def test_habitat_stage_config_uses_the_dataset_up_axis(tmp_path):
    _touch(tmp_path / "mp3d", "s/s.glb")
    _touch(tmp_path / "rcad", "stages/Baked_sc0_staging_00.glb")
    mp3d = discover("mp3d", tmp_path / "mp3d")[0]
    assert habitat_stage_config(mp3d) == {"render_asset": mp3d.spec.uri, "up": [0.0, 0.0, 1.0], "front": [0.0, 1.0, 0.0]}
    rcad = discover("replicacad", tmp_path / "rcad")[0]
    assert habitat_stage_config(rcad)["up"] == [0.0, 1.0, 0.0]
