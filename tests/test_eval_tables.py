import csv

import pytest

from evaluation.runner import write_result
from evaluation.tables import write_tables
from rendering.layout import RunLayout

METHODS = ["croco_v1", "croco_v2", "mae", "none"]
TASKS = ["depth", "flow", "pose"]


def _fake_metrics(task, m_i, seed):
    base = 1.0 + m_i + 0.1 * seed
    return {
        "depth": {"abs_rel": 0.1 * base, "rmse": 0.5 * base, "delta1": 0.9 / base, "delta1_median_scaled": 0.95},
        "flow": {"epe": 2.0 * base, "bad1": 0.3, "bad3": 0.1},
        "pose": {"rot_err_deg": base, "trans_err_deg": 3 * base, "acc5": 0.5, "acc10": 0.75},
    }[task]


def test_tables_all_cells_paper_columns_and_variance(tmp_path):
    for i, m in enumerate(METHODS):
        for t in TASKS:
            for s in (0, 1):
                write_result(RunLayout(tmp_path).result(m, t, s), {"metrics": _fake_metrics(t, i, s)})
    out = write_tables(tmp_path, METHODS, TASKS, [0, 1], {"protocol": "probe", "steps": 5})
    md = (tmp_path / "tables" / "results.md").read_text()
    table_rows = [l for l in md.splitlines() if l.startswith("| ")]
    assert len(table_rows) == 1 + len(METHODS)
    header = table_rows[0].split(" | ")
    assert "paper: NYUv2 δ1 (%)" in header and "paper: Sintel EPE clean / final" in header
    croco = table_rows[1]
    assert "85.6" in croco and "3.00 / 3.60" in croco
    assert "≈79" in table_rows[3] and "4.63 / 5.24" in table_rows[3]
    # CroCo v1: delta1 = mean(0.9/1.0, 0.9/1.1) in %, with the (n-1) std across the two seeds
    assert "**85.9 ± 5.8**" in croco
    assert "| 30.0 ± 0.0 |" in croco  # a tie is not bold
    assert all(cell.strip() for row in table_rows for cell in row.strip("|").split("|"))
    assert "not** measured by this run" in md
    with open(tmp_path / "tables" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(METHODS) * (4 + 3 + 4)
    epe = next(r for r in rows if r["method"] == "mae" and r["metric"] == "epe")
    assert float(epe["mean"]) == pytest.approx(6.1) and epe["seeds"] == "0 1" and epe["paper"] == "4.63 / 5.24"
    assert (tmp_path / "tables" / "results.png").stat().st_size > 5000
    assert out["rows"] == [dict(r, higher_is_better=r["higher_is_better"]) for r in out["rows"]]


def test_missing_result_is_named(tmp_path):
    write_result(RunLayout(tmp_path).result("mae", "depth", 0), {"metrics": _fake_metrics("depth", 0, 0)})
    with pytest.raises(FileNotFoundError, match="eval/none/depth/seed-0.json"):
        write_tables(tmp_path, ["mae", "none"], ["depth"], [0])
    assert not (tmp_path / "tables" / "results.md").exists()
