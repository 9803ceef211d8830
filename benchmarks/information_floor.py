"""The least image information among the views a procedural corpus's sampler decides on.

The per-view image-information check (SamplerConfig.min_image_information) leaves a corpus
unchanged when no view it would judge falls below the minimum: every reference view with enough
valid depth and every accepted second view. This script samples a config's procedural scenes with
the check off, records the information of those views, and prints the least one, so a default
minimum can be shown to leave that corpus byte-for-byte as it was.

    python benchmarks/information_floor.py configs/quickstart.toml [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path


def _scene(args: tuple) -> tuple[str, float, float, int]:
    scene_fields, corpus_json, pairs = args
    import numpy as np

    from pipeline.config import CorpusConfig
    from rendering.backend import SceneSpec
    from rendering.backends.embedded import EmbeddedRenderer
    from rendering.pair import image_information
    from rendering.sampling import PairSamplingError, sample_pair

    corpus = CorpusConfig.model_validate_json(corpus_json)
    sampler = corpus.sampler.model_copy(update={"min_image_information": 0.0})
    spec = SceneSpec(**scene_fields)
    judged: list[float] = []
    accepted: list[float] = []

    class Recording(EmbeddedRenderer):
        def render(self, K, cam2world, width, height):
            view = super().render(K, cam2world, width, height)
            if width == sampler.width and view.valid_fraction >= sampler.min_valid_fraction:
                judged.append(image_information(view.rgb))
            return view

    with Recording() as renderer:
        navigable = renderer.load_scene(spec)
        for k in range(pairs):
            try:
                record = sample_pair(renderer, navigable, spec, k, corpus.seed, sampler)
            except PairSamplingError:
                continue
            accepted += [image_information(record.img1), image_information(record.img2)]
    return spec.scene_id, float(np.min(judged)), float(np.min(accepted)), len(judged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from dataclasses import asdict

    from pipeline.config import load_run_config
    from pipeline.corpus.plan import resolve_scenes

    corpus = load_run_config(args.config).corpus
    jobs = [(asdict(s), corpus.model_dump_json(), corpus.pairs_per_scene) for s in resolve_scenes(corpus)]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.map(_scene, jobs)
    print("| scene | views judged | least information (judged views) | least information (accepted views) |")
    print("| --- | ---: | ---: | ---: |")
    for scene_id, judged, accepted, n in rows:
        print(f"| {scene_id} | {n} | {judged:.4f} | {accepted:.4f} |")
    least = min(r[1] for r in rows)
    print(f"least over all judged views: {least:.4f} (min_image_information default "
          f"{type(corpus.sampler).model_fields['min_image_information'].default})")
    sys.exit(0)


if __name__ == "__main__":
    main()
