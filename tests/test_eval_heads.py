import numpy as np
import pytest
import torch

from evaluation.config import EvaluateConfig
from evaluation.data import TaskArrays
from evaluation.downstream import DownstreamModel, backbone_for_task, configure_protocol
from evaluation.heads import DPTHead, PoseHead, geodesic_angle, hook_indices, rotation_from_6d, silog_loss
from evaluation.metrics import rotation_from_axis_angle
from evaluation.runner import run_one
from training.models import build_model

SIZE = 32  # the 'test' preset: patch 8, 4x4 grid


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors on shared cores: one thread avoids OpenMP spin contention (5x faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
