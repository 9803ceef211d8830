"""The scene check: load every scene once, before any unit, and say which ones are usable.

A scene that cannot be loaded (bad file, wrong unit or up axis, no floor) or whose views carry no
image information would fail or poison every one of its units; checking all scenes first turns
that into one report and one decision (fail the run, or skip those scenes) before any rendering.

Each check loads the scene as the units will (same backend, same options), renders a few probe
views from the sampler's reference poses and reports: triangles, extent in metres, up axis and
units used, floor area, textured fraction, mean image information of the probes, load time and a
verdict. Results are cached per scene content (file digest, scene options, sampler and backend
settings, code version) under ``<run>/scenes/cache``, so a resumed run does not load its scenes
twice. Functions take and return small, picklable values so they run in the render process pool.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.config import CorpusConfig
from pipeline.corpus.identity import rendering_source_hash, scene_digest
from rendering.backend import SceneLoadError, SceneSpec

PROBE_VIEWS = 4
PROBE_STREAM = 0x5CE7E  # a generator stream of its own: probes never share draws with pairs
TABLE_COLUMNS = ("scene_id", "triangles", "extent_m", "up", "units", "floor_m2", "textured", "information",
                 "load_s", "verdict")


class SceneCheckError(ValueError):
    """Scenes of the config are unusable and ``on_scene_error = "fail"``; the message lists them."""


def _check_key(spec: SceneSpec, corpus: CorpusConfig) -> str:
    settings = {"scene": scene_digest(spec), "sampler": corpus.sampler.model_dump(mode="json"),
                "backend": corpus.backend, "backend_options": corpus.backend_options, "code": rendering_source_hash()}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def check_scene(spec_fields: dict, corpus_json: str) -> dict:
    """One scene's report row (never raises for a bad scene: the verdict says what is wrong)."""
    from pipeline.corpus.unit import forget_current_scene, process_renderer, process_scene
    from rendering.pair import image_information
    from rendering.sampling import reference_pose, scene_hash

    spec = SceneSpec(**spec_fields)
    corpus = CorpusConfig.model_validate_json(corpus_json)
    row: dict = {"scene_id": spec.scene_id, "uri": spec.uri, "up": spec.up_axis, "triangles": None,
                 "extent_m": None, "units": None, "floor_m2": None, "textured": None, "information": None,
                 "probe_valid": None, "load_s": None, "verdict": "ok", "reason": ""}
    start = time.perf_counter()
    try:
        renderer = process_renderer(corpus.backend, corpus.backend_options)
        if hasattr(renderer, "load_mesh"):  # the embedded renderer: load through rendering.scenes once
            from rendering.scenes import load_scene

            forget_current_scene(renderer)  # whatever happens next, the unit's scene is not current
            loaded = load_scene(spec, cache_dir=getattr(renderer, "cache_dir", None))
            renderer.load_mesh(loaded.mesh, scene_id=spec.scene_id)
            navigable, facts = loaded.navigable, loaded.facts
        else:
            navigable, facts = process_scene(renderer, spec), {}
    except SceneLoadError as err:
        row.update(load_s=round(time.perf_counter() - start, 2), verdict="refused", reason=str(err))
        return row
    row["load_s"] = round(time.perf_counter() - start, 2)
    extent = facts.get("extent_m")
    row.update(
        triangles=facts.get("triangles"),
        extent_m=" x ".join(f"{v:.1f}" for v in extent) if extent else None,
        units=facts.get("units"),
        floor_m2=round(float(navigable.area_m2), 1) if hasattr(navigable, "area_m2") else None,
        textured=round(float(facts["textured_fraction"]), 2) if "textured_fraction" in facts else None,
    )
    sampler = corpus.sampler
    rng = np.random.default_rng([corpus.seed, scene_hash(spec.scene_id), PROBE_STREAM])
    K = sampler.intrinsics()
    information, valid = [], []
    for _ in range(PROBE_VIEWS):
        _, pose = reference_pose(rng, navigable, sampler)
        view = renderer.render(K, pose, sampler.width, sampler.height)
        information.append(image_information(view.rgb))
        valid.append(view.valid_fraction)
    row["information"] = round(float(np.mean(information)), 3)
    row["probe_valid"] = round(float(np.mean(valid)), 2)
    least = sampler.min_image_information
    if least > 0 and row["information"] < least:
        hint = ('flat-coloured surfaces rendered unlit: set shading = "auto" or "lambert"' if spec.shading == "unlit"
                else "the probe views are nearly uniform (flat colours, or the cameras face one surface)")
        row.update(verdict="refused", reason=(
            f"{spec.uri}: probe views carry little image information (mean {row['information']:.3f} < "
            f"min_image_information {least}); {hint}"))
    return row


def check_scenes(specs: list[SceneSpec], corpus: CorpusConfig, cache_dir: Path, executor=None) -> list[dict]:
    """Report rows of every scene, in order: cached ones read, the others checked (in the pool)."""
    cache_dir = Path(cache_dir)
    corpus_json = corpus.model_dump_json()
    rows: list[dict | None] = []
    todo = []
    for i, spec in enumerate(specs):
        key = _check_key(spec, corpus)
        cached = _read_json(cache_dir / f"{key}.json")
        rows.append(cached)
        if cached is None:
            todo.append((i, key, spec))
    if executor is not None:
        futures = [(i, key, executor.submit(check_scene, asdict(spec), corpus_json)) for i, key, spec in todo]
        results = [(i, key, f.result()) for i, key, f in futures]
    else:
        results = [(i, key, check_scene(asdict(spec), corpus_json)) for i, key, spec in todo]
    for i, key, row in results:
        rows[i] = row
        _write_json(cache_dir / f"{key}.json", row)
    return [r for r in rows if r is not None]


def refused(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["verdict"] != "ok"]


def failure_message(rows: list[dict]) -> str:
    bad = refused(rows)
    lines = [f"{len(bad)} of {len(rows)} scene(s) cannot be used (set on_scene_error = \"skip\" in [corpus] "
             "to build the corpus from the others):"]
    lines += [f"  {r['scene_id']}: {r['reason']}" for r in bad]
    return "\n".join(lines)


def table_rows(rows: list[dict]) -> list[dict]:
    """The report's columns, as the terminal, the Markdown file and the Prefect artifact show them."""
    return [{c: ("" if r.get(c) is None else r[c]) for c in TABLE_COLUMNS} for r in rows]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + " --- |" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in table_rows(rows)]
    reasons = [f"- `{r['scene_id']}`: {r['reason']}" for r in refused(rows)]
    return "\n".join(["# Scene check", "", *lines, "", *(["## Refused", "", *reasons, ""] if reasons else [])])


def write_report(folder: Path, rows: list[dict]) -> Path:
    """``check.json`` (every field) and ``check.md`` (the table) in the run's scenes folder."""
    from rendering.shards import atomic_write_bytes

    folder = Path(folder)
    atomic_write_bytes(folder / "check.json", (json.dumps(rows, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "check.md", markdown(rows).encode())
    return folder / "check.md"


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "verdict" in data else None


def _write_json(path: Path, data: dict) -> None:
    from rendering.shards import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, sort_keys=True) + "\n").encode())


def run_scene_check(corpus: CorpusConfig, layout, executor=None) -> tuple[list[dict], list[dict]]:
    """Check every scene of the config, write the report into ``layout.scene_check_dir`` and
    return (rows, skipped scenes); raises SceneCheckError when a scene is refused and
    ``on_scene_error = "fail"``. Raises CorpusPlanError for a config whose scenes cannot even be
    listed (missing file, duplicate id)."""
    from pipeline.corpus.plan import resolve_scenes

    specs = resolve_scenes(corpus)
    rows = check_scenes(specs, corpus, layout.scene_check_dir / "cache", executor)
    write_report(layout.scene_check_dir, rows)
    bad = refused(rows)
    if bad and corpus.on_scene_error == "fail":
        err = SceneCheckError(failure_message(rows))
        err.rows = rows  # an attribute, not an argument: the exception pickles as a plain one
        raise err
    skipped = [{"scene_id": r["scene_id"], "uri": r["uri"], "reason": r["reason"]} for r in bad]
    return rows, skipped

