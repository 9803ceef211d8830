"""The ``[evaluate.<dataset>]`` sections of the external datasets: where their files are and how
much of them to use. Validated data only (no readers, no torch), shared by the run config and
the array builders (evaluation.external)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class NYUv2Source(BaseModel):
    """NYU Depth v2 (labeled subset) as published: heads train on the official train split and
    are scored on the official test split (654 images), inside Eigen's evaluation crop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labeled_mat: Path = Field(description="nyu_depth_v2_labeled.mat (MATLAB v7.3 / HDF5)")
    splits_mat: Path = Field(description="splits.mat with trainNdxs / testNdxs")
    max_train: int | None = Field(None, gt=0, description="evenly spaced subset of the train split (None = all 795)")
    max_test: int | None = Field(None, gt=0, description="evenly spaced subset of the test split (None = all 654)")
    max_depth_m: float = Field(10.0, gt=0, description="ground truth beyond this is not scored (NYUv2 convention)")


class SintelSource(BaseModel):
    """MPI-Sintel training set: heads train on some scenes and are scored on the others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(description="folder holding training/{clean,final,flow}/<scene>/")
    test_scenes: list[str] | None = Field(
        None, description="scenes held out for scoring; None = the last test_fraction of the sorted scenes"
    )
    max_train: int | None = Field(None, gt=0, description="evenly spaced subset of the training pairs")
    max_test: int | None = Field(None, gt=0, description="evenly spaced subset of the test pairs")

    @field_validator("test_scenes")
    @classmethod
    def _some_scenes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("test_scenes: list at least one scene, or leave it out")
        return value
