"""Applications of smooth unique information (tiny sizes: digits, a narrow MLP)."""
import jax
import numpy as np
import pytest

from jaxinfo import GradientDescent
from jaxinfo.data import label_noise, load_digits, split
from jaxinfo.experiments import applications as A
from jaxinfo.experiments.sui import MLP


def test_detection_metrics_match_sklearn_toy():
    from sklearn.metrics import average_precision_score, roc_auc_score

    pos = np.array([0, 0, 1, 0, 1, 0, 0, 1], bool)
    perfect = pos.astype(float) + 0.1 * np.arange(8)
    inverted = -perfect
    ties = np.zeros(8)
    rows = {r["score"]: r for r in A.detection_metrics(
        dict(perfect=perfect, inverted=inverted, ties=ties), pos)}
    assert rows["perfect"]["auroc"] == 1.0 and rows["perfect"]["average_precision"] == 1.0
    assert rows["inverted"]["auroc"] == 0.0
    assert rows["ties"]["auroc"] == 0.5 and rows["ties"]["average_precision"] == 3 / 8
    rng = np.random.default_rng(0)
    s = rng.random(8)
    r = A.detection_metrics({"s": s}, pos)[0]
    assert r["auroc"] == pytest.approx(roc_auc_score(pos, s))
    assert r["average_precision"] == pytest.approx(average_precision_score(pos, s))
    assert r["n_positive"] == 3 and r["positive_rate"] == 3 / 8
    # AUROC by its definition: P(score of a positive > score of a negative)
    diff = s[pos][:, None] - s[~pos][None]
    assert r["auroc"] == pytest.approx(np.mean(diff > 0))
    with pytest.raises(ValueError, match="both"):
        A.detection_metrics({"s": s}, np.ones(8, bool))


def test_targets_for():
    np.testing.assert_array_equal(A.targets_for([0, 1, 1], 1), [[0.], [1.], [1.]])
    np.testing.assert_array_equal(A.targets_for([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError):
        A.targets_for([0, 2], 1)


@pytest.fixture(scope="module")
def tiny():
    data = load_digits((4, 9), relabel=True)
    tr, te = split(data, [60, 80], 0)
    model = MLP(32)
    params = model.init(jax.random.PRNGKey(0), tr.x[:1])
    return model.apply, params, tr, te, A.Scoring(GradientDescent(lr=0.1, t=100), progress=False)


def test_detect_label_noise_table(tiny):
    apply_fn, params, tr, _, sc = tiny
    noisy, mask = label_noise(tr, 0.15, 0)
    app = A.detect_corrupted(apply_fn, params, noisy, mask, scoring=sc, times=[100, None])
    assert {(r["t"], r["score"]) for r in app.rows} == {
        (t, s) for t in (100.0, "inf") for s in A.SCORES}
    for t in (100.0, "inf"):
        assert set(app.summary[t]["auroc"]) == set(A.SCORES)
    # at a finite t the flipped labels are the badly fitted, most informative samples
    assert app.summary[100.0]["auroc"]["weight_si"] > 0.8
    assert app.summary[100.0]["auroc"]["loss"] > 0.8
    assert app.figure is not None


def test_summarize_plan_and_checkpoint(tiny, tmp_path):
    apply_fn, params, tr, te, sc = tiny
    kw = dict(scoring=sc, fractions=[0.0, 0.5], seeds=2, chunk_size=4,
              checkpoint_dir=tmp_path)
    app = A.summarize(apply_fn, params, tr, te, **kw)
    assert len(app.rows) == 2 * 3 + 2 * 2
    kept = {(r["strategy"], r["fraction"], r["seed"]): r["n_kept"] for r in app.rows}
    assert kept[("least_informative", 0.5, 0)] == 30 and kept[("random", 0.0, 1)] == 60
    # removing the least informative half keeps the most informative ones and vice versa
    fsi, masks = app.arrays["functional_si"], app.arrays["kept"]
    least = masks[[r["strategy"] == "least_informative" and r["fraction"] == 0.5
                   for r in app.rows]][0]
    assert fsi[least].min() >= fsi[~least].max()
    again = A.summarize(apply_fn, params, tr, te, **kw)  # from the checkpoints
    assert [r["test_accuracy"] for r in again.rows] == [r["test_accuracy"] for r in app.rows]
