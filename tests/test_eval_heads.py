import numpy as np
import pytest
import torch

from evaluation.config import EvaluateConfig
from evaluation.val_split import TaskArrays
from evaluation.downstream import DownstreamModel, backbone_for_task, configure_protocol
from evaluation.heads import (
    DPTHead, PoseHead, geodesic_angle, hook_indices, laplacian_flow_loss, rotation_from_6d, silog_loss,
)
from evaluation.metrics import flow_metrics, rotation_from_axis_angle
from evaluation.runner import run_one
from training.models import build_model

SIZE = 32  # the 'test' preset: patch 8, 4x4 grid


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _arrays(task: str, n: int, seed: int = 0) -> TaskArrays:
    rng = np.random.default_rng(seed)
    img1 = rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8)
    if task == "depth":
        # depth is a simple function of the image so a head can learn it
        depth = 1.0 + 3.0 * img1[..., 0].astype(np.float32) / 255.0
        return TaskArrays(task, {"img1": img1, "depth": depth})
    img2 = np.roll(img1, 2, axis=2)
    if task == "flow":
        flow = np.zeros((n, SIZE, SIZE, 2), np.float32)
        flow[..., 0] = 2.0
        return TaskArrays(task, {"img1": img1, "img2": img2, "flow": flow, "valid": np.ones((n, SIZE, SIZE), bool)})
    rot = np.stack([rotation_from_axis_angle([0, 1, 0], 10.0 + i) for i in range(n)])
    direction = np.tile([1.0, 0.0, 0.0], (n, 1))
    return TaskArrays(task, {"img1": img1, "img2": img2, "rotation": rot, "direction": direction})


def test_hook_indices():
    assert hook_indices(12) == [2, 5, 8, 11]
    assert hook_indices(2) == [0, 0, 1, 1]
    assert hook_indices(2, 3) == [0, 1, 1]


def test_dpt_and_pose_head_shapes():
    head = DPTHead([16, 16, 24, 24], 3, features=16)
    out = head([torch.randn(2, 16, 16)] * 2 + [torch.randn(2, 16, 24)] * 2, grid=4, out_size=32)
    assert out.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="grid"):
        head([torch.randn(2, 15, 16)] * 2 + [torch.randn(2, 15, 24)] * 2, grid=4, out_size=32)
    r, t = PoseHead(16)(torch.randn(3, 16, 16))
    assert r.shape == (3, 3, 3) and t.shape == (3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(3), atol=1e-5)
    assert torch.allclose(t.norm(dim=-1), torch.ones(3))


def test_rotation_6d_and_geodesic():
    r = torch.from_numpy(rotation_from_axis_angle([1, 2, 3], 40.0)).float()
    six = torch.cat([r[:, 0], r[:, 1]])[None]
    assert torch.allclose(rotation_from_6d(six)[0], r, atol=1e-5)
    assert geodesic_angle(r[None], torch.eye(3)[None]).item() == pytest.approx(np.radians(40.0), abs=1e-3)


def test_silog_zero_for_perfect_and_scale_aware():
    depth = torch.rand(2, 8, 8) + 0.5
    valid = depth > 0
    assert silog_loss(torch.log(depth), depth, valid).item() < 1e-3
    # lambda < 1: a global scale error still costs something
    assert silog_loss(torch.log(depth * 2), depth, valid).item() > 0.1
    with pytest.raises(ValueError, match="no valid"):
        silog_loss(depth, depth, torch.zeros_like(valid))


@pytest.mark.parametrize("task", ["depth", "flow", "pose"])
def test_model_output_shapes(task):
    torch.manual_seed(0)
    model = DownstreamModel(task, build_model("croco_v1", "test"), head_features=16)
    a = {k: torch.from_numpy(v) for k, v in _arrays(task, 2).arrays.items()}
    out = model(a["img1"], a.get("img2"))
    if task == "depth":
        assert out.shape == (2, 1, SIZE, SIZE)
    elif task == "flow":
        assert out.shape == (2, 3, SIZE, SIZE)
    else:
        assert out[0].shape == (2, 3, 3) and out[1].shape == (2, 3)


def test_mae_gets_fresh_cross_decoder_and_probe_freezes_pretrained():
    mae = build_model("mae", "test")
    net, pretrained = backbone_for_task("mae", "flow", mae)
    assert hasattr(net, "dec_blocks") and any(n.startswith("dec_blocks.") for n, _ in net.named_parameters())
    assert all(n.startswith(("patch_embed", "enc_blocks", "enc_norm")) for n in pretrained)
    assert torch.equal(net.enc_blocks[0].attn.qkv.weight, mae.enc_blocks[0].attn.qkv.weight)
    model = DownstreamModel("flow", net, 16)
    groups = configure_protocol(model, pretrained, "probe")
    assert groups["backbone"] == []
    frozen = [n for n, p in model.backbone.named_parameters() if not p.requires_grad]
    assert frozen and all(n in pretrained for n in frozen)
    assert model.backbone.dec_blocks[0].attn.qkv.weight.requires_grad  # fresh decoder trains
    groups = configure_protocol(model, pretrained, "finetune")
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="allowed: probe, finetune"):
        configure_protocol(model, pretrained, "linear")


@pytest.mark.parametrize("task", ["depth", "flow", "pose"])
def test_training_lowers_loss_and_reports_metrics(task):
    cfg = EvaluateConfig(steps=25, batch_size=4, lr=3e-3, protocol="finetune", device="cpu")
    torch.manual_seed(0)
    backbone = build_model("croco_v1", "test")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = run_one(task, "croco_v1", backbone, _arrays(task, 8), _arrays(task, 4, seed=1), cfg, seed=0, head_features=16)
    losses = [l for _, l in result["train_loss"]]
    assert np.mean(losses[-3:]) < losses[0], losses
    assert result["trainable_backbone"] > 0
    metric = {"depth": "abs_rel", "flow": "epe", "pose": "rot_err_deg"}[task]
    assert np.isfinite(result["metrics"][metric])
    # fine-tuning works on a copy: the caller's backbone is untouched
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in before.items())


def test_protocol_override_fine_tunes_only_that_task():
    cfg = EvaluateConfig(steps=1, batch_size=2, protocol="probe", protocol_overrides={"flow": "finetune"}, device="cpu")
    backbone = build_model("croco_v1", "test")
    flow = run_one("flow", "croco_v1", backbone, _arrays("flow", 4), _arrays("flow", 2, seed=1), cfg, seed=0, head_features=8)
    depth = run_one("depth", "croco_v1", backbone, _arrays("depth", 4), _arrays("depth", 2, seed=1), cfg, seed=0, head_features=8)
    assert flow["protocol"] == "finetune" and flow["trainable_backbone"] > 0
    assert depth["protocol"] == "probe" and depth["trainable_backbone"] == 0


@pytest.mark.parametrize("task", ["depth", "flow", "pose"])
def test_probe_on_frozen_tokens_trains_and_scores_as_on_images(task, monkeypatch):
    """The probe's head trains on tokens computed once; the losses and metrics are those of
    running the frozen backbone on every step's images (fp32 tolerance)."""
    import evaluation.runner as runner

    cfg = EvaluateConfig(steps=6, batch_size=3, lr=3e-3, protocol="probe", device="cpu")
    backbone = build_model("croco_v1", "test")
    train, test = _arrays(task, 7), _arrays(task, 5, seed=1)
    cached = run_one(task, "croco_v1", backbone, train, test, cfg, seed=0, head_features=8)
    monkeypatch.setattr(runner, "TOKEN_CACHE_BYTES", 0)  # over the limit: images every step
    direct = run_one(task, "croco_v1", backbone, train, test, cfg, seed=0, head_features=8)
    assert cached["frozen_tokens"] and not direct["frozen_tokens"]
    for (step_a, loss_a), (step_b, loss_b) in zip(cached["train_loss"], direct["train_loss"], strict=True):
        assert step_a == step_b and loss_a == pytest.approx(loss_b, rel=1e-4, abs=1e-6)
    for key, value in direct["metrics"].items():
        if isinstance(value, float):
            assert cached["metrics"][key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    finetune = run_one(task, "croco_v1", backbone, train, test, cfg.model_copy(update={"protocol": "finetune"}),
                       seed=0, head_features=8)
    assert not finetune["frozen_tokens"]  # a backbone that trains is run on the images


def _geometric_flow_arrays(size: int = SIZE) -> TaskArrays:
    """Flow of ray-cast pairs (both directions), fitted to ``size`` px as the evaluation does."""
    from evaluation.val_split import task_arrays
    from evaluation.ground_truth import PairSample
    from test_eval_ground_truth import analytic_record

    pairs = []
    for i in range(2):
        r = analytic_record("room", i)
        pairs.append(PairSample(key=f"room-{i}", scene_id="room", img1=r.img1, img2=r.img2, depth1=r.depth1,
                                depth2=r.depth2, K1=r.K1, K2=r.K2, cam2world1=r.cam2world1, cam2world2=r.cam2world2))
    return task_arrays(pairs, "flow", size)


@pytest.mark.slow
def test_flow_head_overfits_one_batch_of_geometric_flow():
    """Regression: in pixel units the Laplacian loss's scale channel swamped the flow channels
    and the flow stayed at zero for dozens of steps (for every backbone) once flows were many
    pixels long. The ray-cast flow is scaled x4 to the magnitudes of a 128 px image (the fitting
    problem is otherwise unchanged); trained in units of the training flow's RMS, a probe on a
    frozen random backbone fits the batch (~0.15 x the zero-flow EPE; ~0.8 in pixel units)."""
    data = _geometric_flow_arrays()
    data.arrays["flow"] *= 4.0
    zero_epe = flow_metrics(np.zeros_like(data.arrays["flow"]), data.arrays["flow"], data.arrays["valid"])["epe"]
    assert zero_epe > 8.0  # the pairs really move
    cfg = EvaluateConfig(steps=100, batch_size=len(data), lr=3e-3, protocol="probe", device="cpu")
    torch.manual_seed(0)
    result = run_one("flow", "none", build_model("none", "test"), data, data, cfg, seed=0)
    assert result["trainable_backbone"] == 0 and result["trainable_head"] > 0
    assert result["metrics"]["epe"] < 0.5 * zero_epe, (result["metrics"]["epe"], zero_epe)


def test_flow_scale_keeps_pixel_units_and_decoder_features_reach_the_head():
    torch.manual_seed(0)
    model = DownstreamModel("flow", build_model("croco_v1", "test"), head_features=16)
    a = {k: torch.from_numpy(v) for k, v in _arrays("flow", 2).arrays.items()}
    assert model.flow_scale.item() == pytest.approx(SIZE / 8)
    base = model(a["img1"], a["img2"]).detach()
    model.set_flow_scale(3.0 * model.flow_scale.item())
    out = model(a["img1"], a["img2"])
    assert torch.allclose(out[:, :2], 3.0 * base[:, :2], atol=1e-5)  # flow in pixels scales with the unit
    assert torch.allclose(out[:, 2], base[:, 2] + np.log(3.0), atol=1e-5)  # so does log b
    configure_protocol(model, {n for n, _ in model.backbone.named_parameters()}, "probe")
    laplacian_flow_loss(out, a["flow"].permute(0, 3, 1, 2), a["valid"]).backward()
    for i in range(4):  # encoder block and every decoder block feed the flow's gradient
        assert model.head.project[i].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="positive"):
        model.set_flow_scale(0.0)
    with pytest.raises(ValueError, match="flow task"):
        DownstreamModel("depth", build_model("croco_v1", "test"), 16).set_flow_scale(1.0)
