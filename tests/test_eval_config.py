import sys

import pytest
from pydantic import ValidationError

from evaluation.config import EvaluateConfig


def test_defaults_cover_all_tasks_and_methods():
    cfg = EvaluateConfig()
    assert cfg.tasks == ["depth", "flow", "pose"]
    assert cfg.methods == ["croco_v1", "croco_v2", "mae", "none"]
    assert cfg.protocol == "probe"


def test_unknown_task_lists_allowed():
    with pytest.raises(ValidationError, match=r"unknown task \['segm'\]; allowed: depth, flow, pose"):
        EvaluateConfig(tasks=["depth", "segm"])


def test_unknown_method_and_protocol():
    with pytest.raises(ValidationError, match="allowed: croco_v1, croco_v2, mae, none"):
        EvaluateConfig(methods=["dino"])
    with pytest.raises(ValidationError, match="allowed: probe, finetune"):
        EvaluateConfig(protocol="linear")


def test_extra_keys_and_bad_values_rejected():
    with pytest.raises(ValidationError, match="stepz"):
        EvaluateConfig(stepz=3)
    with pytest.raises(ValidationError):
        EvaluateConfig(steps=0)
    with pytest.raises(ValidationError, match="seeds"):
        EvaluateConfig(seeds=[])
    with pytest.raises(ValidationError, match="twice"):
        EvaluateConfig(tasks=["depth", "depth"])


def test_config_module_does_not_import_torch():
    import subprocess

    code = "import sys, evaluation.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_protocol_overrides_per_task():
    cfg = EvaluateConfig(protocol="probe", protocol_overrides={"flow": "finetune"})
    assert cfg.protocol_for("flow") == "finetune" and cfg.protocol_for("depth") == "probe"
    spec = {"img_size": 32}
    # only the overridden task's results depend on the override
    assert cfg.fingerprint(spec, "depth") == EvaluateConfig().fingerprint(spec, "depth")
    assert cfg.fingerprint(spec, "flow") == EvaluateConfig(protocol="finetune").fingerprint(spec, "flow")
    assert cfg.fingerprint(spec, "flow") != EvaluateConfig().fingerprint(spec, "flow")
    with pytest.raises(ValidationError, match="unknown protocol 'linear' for task 'flow'"):
        EvaluateConfig(protocol_overrides={"flow": "linear"})
    with pytest.raises(ValidationError, match=r"unknown task \['segm'\]"):
        EvaluateConfig(protocol_overrides={"segm": "probe"})
    assert EvaluateConfig(protocol_overrides={}).protocol_for("flow") == "probe"
