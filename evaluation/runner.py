"""Train a head on one task (probe or fine-tune) and score it on the test scenes.

Plain functions, no Prefect: the evaluate flow calls :func:`run_one` once per
(method, task, seed) and stores the returned dict as JSON.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from evaluation.config import TASK_KIND, EvaluateConfig
from evaluation.val_split import TaskArrays
from evaluation.downstream import DownstreamModel, backbone_for_task, configure_protocol, cosine_lr, count_parameters
from evaluation.heads import default_head_features
from evaluation.kinds import flow as flow_kind
from rendering.atomic import atomic_write_text
from training.methods import get_method
from training.models import MaskedViT, ModelSpec, build_from_spec, load_backbone

TRAIN_LOG_POINTS = 10
TOKEN_CACHE_BYTES = 2 * 1024**3  # a frozen backbone's tokens are kept up to this size per split
IMAGE_KEYS = ("img1", "img2")


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("evaluate.device = 'cuda' but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def batch_of(data: TaskArrays, idx: np.ndarray, device: torch.device,
           tokens: list[torch.Tensor] | None = None) -> dict:
    """Samples ``idx`` of ``data`` on ``device``; with ``tokens``, their precomputed backbone
    tokens take the place of the images."""
    batch: dict = {k: torch.from_numpy(np.ascontiguousarray(v[idx])).to(device) for k, v in data.arrays.items()
                   if tokens is None or k not in IMAGE_KEYS}
    if tokens is not None:
        index = torch.from_numpy(np.asarray(idx))
        batch["tokens"] = [t[index].to(device) for t in tokens]
    return batch


@torch.no_grad()
def frozen_tokens(model: DownstreamModel, data: TaskArrays, batch_size: int, device: torch.device,
                  max_bytes: int | None = None) -> list[torch.Tensor] | None:
    """Every sample's backbone tokens, computed once, when the backbone is frozen (the probe of a
    pretrained network, or random init): the head then trains on them instead of running the
    backbone on each step's images. None when a backbone weight trains or they exceed ``max_bytes``."""
    if not model.backbone_frozen() or len(data) == 0:
        return None
    max_bytes = TOKEN_CACHE_BYTES if max_bytes is None else max_bytes
    was_training = model.training
    model.eval()
    parts: list[list[torch.Tensor]] = []
    try:
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            batch = batch_of(data, idx, device)
            parts.append([t.cpu() for t in model.backbone_tokens(batch["img1"], batch.get("img2"))])
            if start == 0 and sum(t.nbytes for t in parts[0]) * len(data) / len(idx) > max_bytes:
                return None
    finally:
        model.train(was_training)
    return [torch.cat(maps) for maps in zip(*parts)]


def _loss(model: DownstreamModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.kind.loss(model, batch)


@torch.no_grad()
def predict_and_score(model: DownstreamModel, data: TaskArrays, batch_size: int, device: torch.device,
                      tokens: list[torch.Tensor] | None = None) -> dict:
    """Metrics of ``model`` on every sample of ``data`` (``tokens``: see :func:`frozen_tokens`)."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(data), batch_size):
        b = batch_of(data, np.arange(start, min(start + batch_size, len(data))), device, tokens)
        for key, value in model.kind.predict(model, b).items():
            parts.setdefault(key, []).append(value)
    return model.kind.score({k: np.concatenate(v) for k, v in parts.items()}, data)


def train_head(
    model: DownstreamModel, groups: dict, train: TaskArrays, cfg: EvaluateConfig, seed: int, device: torch.device,
    tokens: list[torch.Tensor] | None = None,
) -> list[tuple[int, float]]:
    """AdamW with warmup + half-cosine; returns (step, loss) at ~10 points (``tokens``: see
    :func:`frozen_tokens`)."""
    param_groups = [{"params": groups["head"], "lr": cfg.lr, "base_lr": cfg.lr}]
    if groups["backbone"]:
        param_groups.append({"params": groups["backbone"], "lr": cfg.backbone_lr, "base_lr": cfg.backbone_lr})
    opt = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(seed)
    warmup = max(1, cfg.steps // 10)
    log_every = max(1, cfg.steps // TRAIN_LOG_POINTS)
    history: list[tuple[int, float]] = []
    model.train()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * cosine_lr(step, cfg.steps, warmup)
        idx = rng.choice(len(train), size=min(cfg.batch_size, len(train)), replace=False)
        loss = _loss(model, batch_of(train, idx, device, tokens))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{model.task} head: loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in param_groups for p in g["params"]], 5.0)
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            history.append((step, float(loss.item())))
    return history


flow_scale = flow_kind.flow_scale


def load_method_backbone(method: str, checkpoint: Path | None, spec: ModelSpec, seed: int) -> MaskedViT:
    """The pretrained network of ``method`` (from its checkpoint), or for ``none`` a random-init
    CroCo v1 network of the same size, seeded with ``seed``."""
    if not get_method(method).pretrained:
        torch.manual_seed(seed)
        return build_from_spec(method, spec)
    if checkpoint is None:
        raise ValueError(f"method {method!r} needs a pretraining checkpoint")
    model, info = load_backbone(checkpoint)
    if info.get("method") != method:
        raise ValueError(f"checkpoint {checkpoint} holds method {info.get('method')!r}, expected {method!r}")
    return model


def run_one(
    task: str,
    method: str,
    backbone: MaskedViT,
    train: TaskArrays,
    test: TaskArrays,
    cfg: EvaluateConfig,
    seed: int,
    head_features: int | None = None,
) -> dict:
    """Build the downstream model for (task, method), train it with ``seed``, score it."""
    t0 = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    device = pick_device(cfg.device)
    kind = TASK_KIND[task]
    net, pretrained = backbone_for_task(method, kind, copy.deepcopy(backbone))  # fine-tuning edits it
    features = head_features or default_head_features(net.spec.enc_dim)
    model = DownstreamModel(kind, net, features)
    model.kind.prepare(model, train)  # priors from the training data (mean log-depth, flow unit)
    groups = configure_protocol(model, pretrained, cfg.protocol_for(task))
    model.to(device)
    train_tokens = frozen_tokens(model, train, cfg.batch_size, device)
    test_tokens = frozen_tokens(model, test, cfg.batch_size, device) if train_tokens is not None else None
    history = train_head(model, groups, train, cfg, seed, device, train_tokens)
    metrics = predict_and_score(model, test, cfg.batch_size, device, test_tokens)
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "protocol": cfg.protocol_for(task),
        "steps": cfg.steps,
        "metrics": metrics,
        "train_loss": history,
        "n_train": len(train),
        "n_test": len(test),
        "trainable_head": count_parameters(groups["head"]),
        "trainable_backbone": count_parameters(groups["backbone"]),
        "device": str(device),
        "frozen_tokens": train_tokens is not None,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def write_result(path: Path, result: dict) -> None:
    """Atomic JSON write: the file's presence means the (method, task, seed) run is complete."""
    atomic_write_text(Path(path), json.dumps(result, indent=2, sort_keys=True))
