"""CPU ms per pair of what a unit does after sampling: encode a pair's members, write them to a shard.

Renders ``--pairs`` pairs of one procedural scene once (as a render process does: llvmpipe on the
calling thread), then encodes and writes them ``--shards`` times, and prints the process time per
pair of each step. Run it whole-process against another checkout to compare two versions:

  python benchmarks/shard_write.py --size 256
  farm-bench -n 5 --vs "env PYTHONPATH=<other checkout> python benchmarks/shard_write.py" -- python benchmarks/shard_write.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--shards", type=int, default=20, help="times the pairs are encoded and written")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    os.environ.setdefault("LP_NUM_THREADS", "0")
    from rendering.backend import SceneSpec
    from rendering.backends import create_renderer
    from rendering.sampling import SamplerConfig, sample_pair
    from rendering.shards import ShardWriter, encode_sample

    scene = SceneSpec("proc-000000", "procedural:0")
    sampler = SamplerConfig(width=args.size, height=args.size)
    renderer = create_renderer("embedded")
    navigable = renderer.load_scene(scene)
    records = [sample_pair(renderer, navigable, scene, k, 0, sampler) for k in range(args.pairs)]
    renderer.close()
    encode = write = close = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for shard in range(args.shards):
            writer = ShardWriter(Path(folder) / f"pairs-{shard:06d}.tar")
            for k, record in enumerate(records):
                key = f"proc-000000-{k:08d}"
                start = time.process_time()
                fields = encode_sample(record, key)
                middle = time.process_time()
                writer.write(key, fields)
                encode, write = encode + middle - start, write + time.process_time() - middle
            start = time.process_time()
            writer.close()
            close += time.process_time() - start
    n = args.pairs * args.shards
    print(f"{args.pairs} pairs at {args.size} px, written {args.shards} times: CPU ms per pair: "
          f"encode {1000 * encode / n:.3f}, shard write {1000 * write / n:.3f}, close (fsync, sha256) "
          f"{1000 * close / n:.3f}, total {1000 * (encode + write + close) / n:.3f}")


if __name__ == "__main__":
    main()
