"""Per-process state of render workers: the current scene is loaded once, llvmpipe threads."""

from __future__ import annotations

import os

import pytest

from pipeline.corpus import unit
from pipeline.cores import available_cores
from rendering.backend import SceneSpec


class CountingRenderer:
    name = "counting"

    def __init__(self) -> None:
        self.loads: list[str] = []

    def load_scene(self, scene: SceneSpec):
        if scene.uri == "broken":
            raise ValueError("cannot load")
        self.loads.append(scene.scene_id)
        return f"floor of {scene.scene_id} #{len(self.loads)}"


def test_a_current_scene_is_not_loaded_again_and_any_other_is(tmp_path):
    renderer = CountingRenderer()
    a, b = SceneSpec("a", "procedural:1"), SceneSpec("b", "procedural:2")
    assert unit.process_scene(renderer, a) == "floor of a #1"
    assert unit.process_scene(renderer, a) == "floor of a #1"  # the same floor object, no load
    assert unit.process_scene(renderer, b) == "floor of b #2"
    assert unit.process_scene(renderer, a) == "floor of a #3"
    assert unit.process_scene(renderer, SceneSpec("a", "procedural:1", up_axis="z")) == "floor of a #4"
    other = CountingRenderer()  # one current scene per renderer
    assert unit.process_scene(other, a) == "floor of a #1"
    assert renderer.loads == ["a", "b", "a", "a"]


def test_a_scene_file_edited_in_place_is_loaded_again(tmp_path):
    renderer = CountingRenderer()
    mesh = tmp_path / "room.glb"
    mesh.write_bytes(b"one")
    scene = SceneSpec("room", str(mesh))
    unit.process_scene(renderer, scene)
    unit.process_scene(renderer, scene)
    mesh.write_bytes(b"longer content")
    unit.process_scene(renderer, scene)
    assert renderer.loads == ["room", "room"]


def test_a_failed_load_leaves_no_scene_current():
    renderer = CountingRenderer()
    a = SceneSpec("a", "procedural:1")
    unit.process_scene(renderer, a)
    with pytest.raises(ValueError, match="cannot load"):
        unit.process_scene(renderer, SceneSpec("x", "broken"))
    unit.process_scene(renderer, a)  # the renderer may hold anything now: load again
    assert renderer.loads == ["a", "a"]


def test_llvmpipe_rasterises_inline_only_with_a_process_per_core(monkeypatch):
    cores = available_cores()
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    if cores > 1:
        unit.configure_render_process(cores - 1)  # a spare core: Mesa's default threads stay
        assert "LP_NUM_THREADS" not in os.environ
    unit.configure_render_process(cores)
    assert os.environ["LP_NUM_THREADS"] == "0"
    monkeypatch.setenv("LP_NUM_THREADS", "3")  # the user's choice wins
    unit.configure_render_process(cores * 2)
    assert os.environ["LP_NUM_THREADS"] == "3"


def test_a_warmed_up_pool_has_every_render_process_started_and_configured():
    workers = max(2, available_cores())  # a process per core: llvmpipe rasterises inline
    pool = unit.render_process_pool(workers, "embedded", {}, warm_up=True)
    try:
        assert len(pool._processes) == workers  # started by the warm-up, before any unit
        settings = {pool.submit(os.getenv, "LP_NUM_THREADS").result() for _ in range(workers)}
        assert settings == {os.environ.get("LP_NUM_THREADS", "0")}
    finally:
        pool.shutdown(wait=True)
