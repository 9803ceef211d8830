"""Prefect artifacts that render as written: escaped cells, percentages, embedded PNGs."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from pipeline.flows.artifact_images import markdown_cell, png_markdown


def test_cells_that_markdown_would_reinterpret_are_escaped():
    assert markdown_cell(">1px (%)") == "\\>1px (%)"
    assert markdown_cell("a | b") == "a \\| b" and markdown_cell("EPE (px)") == "EPE (px)"


def test_png_is_embedded_as_a_data_uri(tmp_path):
    ok, buf = cv2.imencode(".png", np.full((4, 4, 3), 200, np.uint8))
    path = tmp_path / "fig.png"
    path.write_bytes(buf.tobytes())
    text = png_markdown("Results", path)
    encoded = text.split("data:image/png;base64,")[1].split(")")[0]
    assert base64.b64decode(encoded) == buf.tobytes() and text.startswith("### Results")
    assert "missing" in png_markdown("Gone", tmp_path / "none.png")


def test_evaluation_table_artifact_shows_percentages_in_percent():
    import pipeline.prefect_env  # noqa: F401  (flows import prefect)
    from pipeline.flows.evaluate import artifact_rows

    rows = [
        {"method": "croco_v1", "task": "flow", "label": ">1px (%)", "mean": 0.4567, "std": 0.01, "n_seeds": 3,
         "seeds": "0 1 2", "paper": ""},
        {"method": "croco_v1", "task": "flow", "label": "EPE (px)", "mean": 1.23456, "std": 0.0, "n_seeds": 1,
         "seeds": "0", "paper": ""},
    ]
    shown = artifact_rows(rows)
    assert shown[0]["metric"] == "\\>1px (%)" and shown[0]["value"] == "45.7 ± 1.0"
    assert shown[1]["value"] == "1.235"  # one seed: no spread shown
