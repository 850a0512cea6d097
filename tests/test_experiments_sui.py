"""SUI ground-truth experiment helpers, the demo and the plots (tiny configurations)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from jaxinfo.experiments import sui as exp


def test_load_task_split():
    task = exp.load_task("digits")
    assert task.x_train.shape[1] == 64 and task.side == 8
    assert len(task.x_train) + len(task.x_ref) == 361
    assert set(np.unique(task.y_train)) == {0.0, 1.0} and task.y_train.shape[1] == 1
    again = exp.load_task("digits")
    np.testing.assert_array_equal(task.train_ids, again.train_ids)  # fixed split
    m = exp.load_task("mnist", size=14, n_train=100)
    assert m.x_train.shape == (100, 196) and m.x_ref.shape == (900, 196)
    with pytest.raises(ValueError, match="dataset"):
        exp.load_task("cifar")
    with pytest.raises(ValueError, match="n_train"):
        exp.load_task("digits", n_train=1)


def test_ground_truth_tiny_rows():
    res = exp.ground_truth("digits", "mlp", lr=0.01, steps=20, n_train=16, width=64,
                           n_retrain=8, chunk_size=4, progress=False)
    assert [r["quantity"] for r in res.rows] == ["weight", "function"]
    for r in res.rows:
        assert -1 <= r["pearson"] <= 1 and -1 <= r["spearman"] <= 1
        assert r["n_retrained"] == 8 and r["n_train"] == 16
    assert res.estimated_weight_sq.shape == (16,) and len(res.actual.indices) == 8
    md = exp.rows_to_markdown(res.rows, ["model", "quantity", "pearson"])
    assert md.count("\n") == 3 and "| mlp | weight |" in md


def test_demo_quick(tmp_path, capsys):
    out = exp.demo(str(tmp_path), quick=True, progress=False)
    printed = capsys.readouterr().out
    assert "most informative" in printed and "least informative" in printed
    with open(out["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40
    assert set(rows[0]) == {"index", "dataset_index", "digit", "weight_si_nats",
                            "functional_si_nats", "rank_functional"}
    fsi = np.array([float(r["functional_si_nats"]) for r in rows])
    wsi = np.array([float(r["weight_si_nats"]) for r in rows])
    assert np.all(np.isfinite(fsi)) and np.all(fsi >= 0) and np.all(wsi >= 0)
    assert sorted(int(r["rank_functional"]) for r in rows) == list(range(1, 41))
    assert {r["digit"] for r in rows} <= {"4", "9"}
    with open(out["png"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots(tmp_path):
    from jaxinfo.plots import image_grid, scatter_estimated_vs_actual

    rng = np.random.default_rng(0)
    a = rng.exponential(size=30)
    p1 = tmp_path / "s.png"
    scatter_estimated_vs_actual(a * 1.1, a, path=str(p1), title="t")
    p2 = tmp_path / "g.png"
    image_grid(rng.uniform(size=(6, 64)), rng.uniform(size=6), labels=[4] * 6, path=str(p2),
               ncols=3)
    assert p1.stat().st_size > 1000 and p2.stat().st_size > 1000
    with pytest.raises(ValueError, match="one score per image"):
        image_grid(rng.uniform(size=(6, 8, 8)), [1.0])
