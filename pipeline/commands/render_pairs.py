"""`crocopipe render-pairs SCENE_URI --out DIR`: sample pairs of one scene into plain files to look at.

Each pair goes to ``DIR/<sample-key>/`` as ``img1.jpg``, ``img2.jpg``, ``depth1.npy``,
``depth2.npy`` (uint16, depth / depth_scale) and ``meta.json`` -- the shard schema's fields, encoded
by the same code as the shards -- plus ``DIR/contact_sheet.png``. No Prefect: one process, one scene.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import typer

CONTACT_SHEET = "contact_sheet.png"
_SAMPLER_DEFAULT = "(default: the [corpus.sampler] default)"
MAX_SHEET_PAIRS = 32


def _fail(message: str) -> typer.Exit:
    typer.echo(f"render-pairs: {message}", err=True)
    return typer.Exit(code=2)


def _write_sample(out: Path, key: str, fields: dict[str, bytes], overwrite: bool) -> Path:
    """Write one pair's files into ``out/key`` via a temporary folder renamed into place."""
    from rendering.atomic import temporary_name

    final = out / key
    tmp = temporary_name(final)  # a folder: renamed into place whole, like the atomic file writes
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, data in fields.items():
            if name == "meta.json":  # same content as in shards, indented for people to read
                data = (json.dumps(json.loads(data), indent=2, sort_keys=True) + "\n").encode("utf-8")
            (tmp / name).write_bytes(data)
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists")
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def render_pairs(
    scene_uri: str = typer.Argument(..., help="mesh file (.glb/.gltf/.obj/.ply) or procedural:<seed>[?params]"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (created; must be empty unless --overwrite)"),
    num_pairs: int = typer.Option(8, "--num-pairs", "-n", min=1, help="pairs to render"),
    seed: int = typer.Option(0, "--seed", min=0, help="corpus seed: pair k is drawn from (seed, scene id, k)"),
    first_pair: int = typer.Option(0, "--first-pair", min=0, help="index of the first pair"),
    width: Optional[int] = typer.Option(None, help=f"image width in pixels {_SAMPLER_DEFAULT}"),
    height: Optional[int] = typer.Option(None, help=f"image height in pixels {_SAMPLER_DEFAULT}"),
    hfov: Optional[float] = typer.Option(None, help=f"horizontal field of view in degrees {_SAMPLER_DEFAULT}"),
    min_covis: Optional[float] = typer.Option(None, help=f"least co-visibility of a kept pair {_SAMPLER_DEFAULT}"),
    max_covis: Optional[float] = typer.Option(None, help=f"largest co-visibility of a kept pair {_SAMPLER_DEFAULT}"),
    covis_method: Optional[str] = typer.Option(None, help=f"reprojection or croco_nn {_SAMPLER_DEFAULT}"),
    max_references: Optional[int] = typer.Option(None, help=f"reference views per pair before giving up {_SAMPLER_DEFAULT}"),
    max_candidates: Optional[int] = typer.Option(None, "--max-candidates", help=f"second views per reference view {_SAMPLER_DEFAULT}"),
    backend: str = typer.Option("embedded", help="renderer backend: embedded or habitat"),
    scene_id: Optional[str] = typer.Option(None, "--name", "--scene-id",
                                           help="scene id (default: derived from the URI as corpora do)"),
    up: str = typer.Option("y", "--up", help="the file axis that points up: y, z, -y, -z, x, -x"),
    scale: Optional[str] = typer.Option(None, "--scale", help="metres per file unit, or 'auto' (default: metres)"),
    shading: str = typer.Option("auto", "--shading", help="unlit, lambert, or auto (Lambert on flat colours)"),
    jpeg_quality: int = typer.Option(95, min=1, max=100, help="JPEG quality of img1/img2"),
    depth_scale: float = typer.Option(0.001, help="metres per depth unit"),
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty --out, replacing same-named pairs"),
) -> None:
    """Render CroCo-style pairs of one scene as image files + JSON, with a contact sheet."""
    import pydantic

    from rendering.sampling import SamplerConfig

    given = {"width": width, "height": height, "hfov_deg": hfov, "min_covis": min_covis, "max_covis": max_covis,
             "covis_method": covis_method, "max_references": max_references,
             "max_candidates_per_reference": max_candidates}
    try:  # unset options keep the corpus sampler's defaults (rendering.sampling.SamplerConfig)
        config = SamplerConfig(**{k: v for k, v in given.items() if v is not None})
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors())
        raise _fail(f"invalid sampling options: {problems}") from None
    if not depth_scale > 0:
        raise _fail(f"--depth-scale must be > 0, got {depth_scale}")
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise _fail(f"--out {out} is not empty; pass --overwrite to write into it anyway")

    from rendering.scene_uri import scene_id_for_uri
    from rendering.backend import SceneLoadError, SceneSpec
    from rendering.backends import create_renderer
    from rendering.contact_sheet import write_contact_sheet

    try:
        scene_scale = None if scale in (None, "auto") else float(scale)
    except ValueError:
        raise _fail(f"--scale must be a number of metres per file unit or 'auto', got {scale!r}") from None
    scene_scale = "auto" if scale == "auto" else scene_scale
    try:
        scene = SceneSpec(scene_id or scene_id_for_uri(scene_uri), scene_uri, up, scene_scale, shading)
    except ValueError as err:
        raise _fail(f"invalid scene options: {err}") from None
    try:
        renderer = create_renderer(backend)
    except (ValueError, ImportError, RuntimeError) as err:
        raise _fail(f"cannot start the {backend!r} renderer: {err}") from None
    try:
        try:
            navigable = renderer.load_scene(scene)
        except SceneLoadError as err:
            raise _fail(f"cannot load scene {scene_uri!r}: {err}") from None
        out.mkdir(parents=True, exist_ok=True)
        indices = range(first_pair, first_pair + num_pairs)
        written, failed, sheet = _render_all(
            renderer, navigable, scene, indices, seed, config, out, jpeg_quality, depth_scale, overwrite
        )
    finally:
        renderer.close()

    if sheet:
        write_contact_sheet(sheet, out / CONTACT_SHEET)
    attempts = sum(r["attempts"] for r in written)
    rejections: dict[str, int] = {}
    for r in written:
        for reason, count in r["rejections"].items():
            rejections[reason] = rejections.get(reason, 0) + count
    typer.echo(f"wrote {len(written)} pair(s) of {scene.scene_id} to {out}")
    if written:
        typer.echo(f"rendered views per accepted pair: {attempts / len(written):.1f}; rejections: "
                   + (", ".join(f"{k}={v}" for k, v in sorted(rejections.items())) or "none"))
    for message in failed:
        typer.echo(f"render-pairs: {message}", err=True)
    if failed:
        typer.echo(f"render-pairs: {len(failed)} of {num_pairs} pair(s) found no acceptable view pair", err=True)
        raise typer.Exit(code=1)


def _render_all(renderer, navigable, scene, indices: range, seed: int, config, out: Path, jpeg_quality: int,
                depth_scale: float, overwrite: bool) -> tuple[list[dict], list[str], list]:
    """Sample, encode and write each pair with a progress bar; failures are collected, not fatal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rendering.render_loop import Encoding, FailedPair, sampled_pairs

    written: list[dict] = []
    failed: list[str] = []
    sheet = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(f"pairs of {scene.scene_id}", total=len(indices))
        encoding = Encoding("jpg", jpeg_quality, depth_scale)
        for item in sampled_pairs(renderer, navigable, scene, indices, seed, config, encoding):
            if isinstance(item, FailedPair):
                failed.append(item.reason)
            else:
                _write_sample(out, item.key, item.fields, overwrite)
                written.append(item.record.meta(depth_scale))
                if len(sheet) < MAX_SHEET_PAIRS:
                    sheet.append(item.record)
            progress.advance(task)
    return written, failed, sheet
