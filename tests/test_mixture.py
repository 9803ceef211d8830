"""Weighted corpus mixtures in pretraining: exact per-source counts, resume, and a real mixture run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import run_config_from_dict
from pipeline.corpus import merge_corpus, plan_units, prepare_corpus_dir, run_unit
from pipeline.corpus.mine import merge_mined_corpus, plan_mine_units, run_mine_unit
from pipeline.mine_config import load_mine_config
from rendering.backends.embedded import EmbeddedRenderer
from tests.capture_layouts import render_sequence, write_scannet
from training.config import CorpusSource, PretrainConfig
from training.mixture import MixtureSource, mix, mixture_sources


def _within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


def test_mix_draws_each_source_with_its_weights_share():
    streams = [iter(range(10**9)), iter(range(10**9)), iter(range(10**9))]
    draws = [k for _, (k, _value) in zip(range(20000), mix(streams, [1.0, 0.5, 0.5], np.random.default_rng(0)))]
    counts = np.bincount(draws, minlength=3)
    assert _within(counts[0], 20000, 0.5) and _within(counts[1], 20000, 0.25) and _within(counts[2], 20000, 0.25)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    """A rendered corpus (procedural scene, embedded renderer) and a mined one (rendered ScanNet export)."""
    root = tmp_path_factory.mktemp("mixture")
    run = run_config_from_dict({
        "run_dir": "rendered",
        "corpus": {"scenes": {"procedural": {"count": 2, "rooms": 1}}, "pairs_per_scene": 6, "pairs_per_shard": 6,
                   "val_scenes": ["proc-000001-rooms-1"],
                   "sampler": {"width": 48, "height": 48, "screen_size": 0, "min_covis": 0.3}},
    }, root / "run.toml")
    units = plan_units(run.corpus)
    prepare_corpus_dir(run.corpus_dir, run.corpus, units)
    for unit in units:
        run_unit(unit.as_dict(), str(run.corpus_dir), run.corpus.model_dump_json())
    merge_corpus(run.corpus_dir, run.corpus, units, make_card=False)

    with EmbeddedRenderer() as renderer:
        for name, seed in (("scene0000_00", 3), ("scene0001_00", 5)):
            write_scannet(root / "scans" / name, render_sequence(renderer, n=6, color_size=(64, 48),
                                                                 depth_size=(64, 48), seed=seed))
    (root / "mine.toml").write_text('run_dir = "mined"\n[mine]\nwidth = 48\nheight = 48\n'
                                    'val_sequences = ["scannet-scene0001_00"]\n'
                                    '[[mine.sources]]\nkind = "scannet"\nroot = "scans"\n'
                                    '[mine.mining]\nframe_stride = 1\nmin_covis = 0.2\nmin_baseline_m = 0.0\n')
    mined = load_mine_config(root / "mine.toml")
    mine_units = plan_mine_units(mined.mine)
    prepare_corpus_dir(mined.corpus_dir, mined.mine, mine_units)
    for unit in mine_units:
        run_mine_unit(unit.as_dict(), str(mined.corpus_dir), mined.mine.model_dump_json(), mined.mine.content_hash())
    merge_mined_corpus(mined.corpus_dir, mined.mine, mine_units, make_card=False)
    return run.corpus_dir, mined.corpus_dir


def test_corpora_paths_resolve_against_the_config_file(tmp_path):
    run = run_config_from_dict({
        "run_dir": "r", "corpus": {"scenes": {"procedural": {"count": 1}}, "pairs_per_scene": 1, "pairs_per_shard": 1},
        "pretrain": {"corpora": [{"path": "a/corpus", "weight": 1.0}, {"path": "/abs/b", "weight": 0.5, "name": "b"}]},
    }, tmp_path / "cfg" / "run.toml")
    assert [c.path for c in run.pretrain.corpora] == [tmp_path / "cfg" / "a" / "corpus", Path("/abs/b")]
    assert [c.label for c in run.pretrain.corpora] == ["a", "b"]
    with pytest.raises(ValueError, match="share a label"):
        PretrainConfig(corpora=[{"path": "x/corpus"}, {"path": "y/x"}])


def test_a_missing_mixture_corpus_is_named(tmp_path, corpora):
    from training.pair_loader import CorpusError

    with pytest.raises(CorpusError, match=r"pretrain.corpora\[1\] \(nowhere\): corpus folder not found"):
        mixture_sources([CorpusSource(path=corpora[0]), CorpusSource(path=tmp_path / "nowhere")], "", "train")


def test_a_resumed_mixture_stream_replays_the_same_batches(corpora):
    from training.pair_loader import AugmentConfig, PairStream

    sources = mixture_sources([CorpusSource(path=corpora[0], weight=1.0), CorpusSource(path=corpora[1], weight=3.0)],
                              "", "train")
    full = PairStream(sources, AugmentConfig(16), 4, seed=5, shuffle_buffer=4)
    batches = [b for _, b in zip(range(5), full)]
    resumed = PairStream(sources, AugmentConfig(16), 4, seed=5, shuffle_buffer=4, skip_batches=3)
    again = [b for _, b in zip(range(2), resumed)]
    for a, b in zip(batches[3:], again):
        assert np.array_equal(a["img1"].numpy(), b["img1"].numpy())
        assert a["source_counts"].tolist() == b["source_counts"].tolist()
    assert sum(sum(b["source_counts"].tolist()) for b in batches) == 20


@pytest.mark.slow
def test_a_rendered_and_a_mined_corpus_train_together_with_logged_counts(corpora, tmp_path, one_torch_thread):
    from training.train import train

    rendered, mined = corpora
    cfg = PretrainConfig(methods=["croco_v2"], preset="test", batch_size=8, epochs=4, steps_per_epoch=8,
                         warmup_epochs=1, stop_fraction=1.0, checkpoint_every=100, log_every=8, figure_every=1000, cross_view_every=0,
                         num_workers=0, shuffle_buffer=8, tensorboard=False,
                         corpora=[{"path": str(rendered), "weight": 1.0, "name": "rendered"},
                                  {"path": str(mined), "weight": 0.5, "name": "mined"}])
    summary = train(cfg, "croco_v2", "", tmp_path / "out")
    assert summary["steps"] == 32
    record = json.loads((tmp_path / "out" / "ranks" / "rank-0.json").read_text())
    counts, n = record["samples_by_source"], record["samples_seen"]
    assert n == 256 and counts["rendered"] + counts["mined"] == n
    assert _within(counts["rendered"], n, 2 / 3) and _within(counts["mined"], n, 1 / 3)
    last = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["samples_by_source"] == counts and np.isfinite(last["loss"])


def test_evaluation_reads_val_pairs_from_each_corpus_in_proportion(corpora):
    from evaluation.val_split import allocate, read_val_mixture

    assert allocate(10, [1.0, 0.5]) == [7, 3] and allocate(5, [1.0, 1.0, 1.0]) == [2, 2, 1]
    assert sum(allocate(997, [0.3, 0.7, 2.0])) == 997
    rendered, mined = corpora
    pairs, counts = read_val_mixture([("rendered", rendered, 2.0), ("mined", mined, 1.0)], max_pairs=6)
    assert counts == {"rendered": 4, "mined": 2} and len(pairs) == 6
    assert [p.scene_id.startswith("scannet-") for p in pairs] == [False] * 4 + [True] * 2
    uncapped, counts = read_val_mixture([("rendered", rendered, 1.0), ("mined", mined, 1.0)])
    assert counts["rendered"] == counts["mined"] == len(uncapped) // 2 > 0


def test_evaluation_corpora_change_only_corpus_task_fingerprints(tmp_path):
    from evaluation.config import EvaluateConfig

    spec = {"img_size": 32}
    plain = EvaluateConfig(tasks=["depth"])
    mixed = EvaluateConfig(tasks=["depth"], corpora=[{"path": str(tmp_path / "a"), "weight": 1.0}])
    assert plain.fingerprint(spec, "depth") != mixed.fingerprint(spec, "depth")
    with pytest.raises(ValueError, match="share a label"):
        EvaluateConfig(corpora=[{"path": "x/corpus"}, {"path": "y/x"}])
