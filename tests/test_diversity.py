"""Diversity measures against independent references (scipy, scikit-learn, analytic MI)."""
import jax
import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import mutual_info_score

from jaxinfo.diversity import (bin_activations, diversity_summary, kendall_tau, neuron_entropy,
                               offdiag_summary, pairwise_mutual_information, rank_models)


def _acts(s=400, n=7, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(s, n))
    a[:, 1] = a[:, 0] ** 2 + 0.1 * a[:, 1]          # dependent on neuron 0
    a[:, 2] = np.maximum(a[:, 2], 0)                 # ReLU-like: ties at 0
    a[:, 3] = 2.5                                    # constant neuron
    a[:, 4] = rng.integers(0, 3, s)                  # heavy ties
    return a


@pytest.mark.parametrize("binning", ["global", "per_neuron"])
def test_bins_match_numpy_histogram(x64, binning):
    a = _acts()
    bins = 13
    lab = np.asarray(bin_activations(a, bins=bins, binning=binning).labels)
    for j in range(a.shape[1]):
        rng = (a.min(), a.max()) if binning == "global" else None
        counts, _ = np.histogram(a[:, j], bins=bins, range=rng)
        np.testing.assert_array_equal(np.bincount(lab[:, j], minlength=bins), counts)


@pytest.mark.parametrize("binning", ["global", "per_neuron"])
def test_entropy_matches_scipy(x64, binning):
    a = _acts()
    h = np.asarray(neuron_entropy(a, bins=20, binning=binning))
    for j in range(a.shape[1]):
        rng = (a.min(), a.max()) if binning == "global" else None
        counts, _ = np.histogram(a[:, j], bins=20, range=rng)
        np.testing.assert_allclose(h[j], scipy.stats.entropy(counts), atol=1e-12)
    assert h[3] == 0.0  # constant neuron


def test_miller_madow(x64):
    a = _acts()
    h = np.asarray(neuron_entropy(a, bins=20, binning="per_neuron"))
    hm = np.asarray(neuron_entropy(a, bins=20, binning="per_neuron", correction="miller_madow"))
    lab = np.asarray(bin_activations(a, bins=20, binning="per_neuron").labels)
    m = np.array([len(np.unique(lab[:, j])) for j in range(a.shape[1])])
    np.testing.assert_allclose(hm, h + (m - 1) / (2 * a.shape[0]), atol=1e-12)
    assert hm[3] == 0.0


@pytest.mark.parametrize("binning,block", [("global", 1), ("global", 4), ("per_neuron", 16)])
def test_binned_mi_matches_sklearn_every_pair(x64, binning, block):
    a = _acts()
    bins = 10
    lab = np.asarray(bin_activations(a, bins=bins, binning=binning).labels)
    mi = np.asarray(pairwise_mutual_information(a, bins=bins, binning=binning, block_size=block))
    n = a.shape[1]
    for i in range(n):
        for j in range(n):
            if i != j:
                assert abs(mi[i, j] - mutual_info_score(lab[:, i], lab[:, j])) <= 1e-10
    np.testing.assert_array_equal(np.diag(mi), 0.0)
    np.testing.assert_array_equal(mi, mi.T)
    assert np.all(mi[3] == 0.0)  # constant neuron shares no information


def test_binned_mi_permutation_invariance(x64):
    a = _acts()
    mi = np.asarray(pairwise_mutual_information(a, bins=10))
    perm = np.random.default_rng(1).permutation(a.shape[1])
    mi_p = np.asarray(pairwise_mutual_information(a[:, perm], bins=10))
    np.testing.assert_allclose(mi_p, mi[np.ix_(perm, perm)], atol=1e-12)
    rows = np.random.default_rng(2).permutation(a.shape[0])  # sample order is irrelevant
    np.testing.assert_allclose(pairwise_mutual_information(a[rows], bins=10), mi, atol=1e-12)


def test_binned_mi_from_labels(x64):
    a = _acts()
    lab = bin_activations(a, bins=10).labels
    np.testing.assert_allclose(pairwise_mutual_information(None, labels=lab, bins=10),
                               pairwise_mutual_information(a, bins=10), atol=1e-14)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ksg_correlated_gaussians(x64, rho):
    rng = np.random.default_rng(int(rho * 10))
    s = 800
    x = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=s)
    mi = np.asarray(pairwise_mutual_information(x, method="ksg", key=jax.random.PRNGKey(0),
                                                sample_chunk=300))
    exact = -0.5 * np.log(1 - rho ** 2)
    # KSG-1 with k=3 at S=800: standard deviation ~0.02 nats, bias small for Gaussians.
    assert abs(mi[0, 1] - exact) < 0.06, (mi[0, 1], exact)
    assert mi[0, 1] == mi[1, 0]


def test_ksg_matches_sklearn_estimator(x64):
    from sklearn.feature_selection import mutual_info_regression

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3))
    x[:, 1] += np.sin(2 * x[:, 0])
    mi = np.asarray(pairwise_mutual_information(x, method="ksg", key=jax.random.PRNGKey(1)))
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        ref = mutual_info_regression(x[:, [i]], x[:, j], n_neighbors=3, random_state=0)[0]
        assert abs(mi[i, j] - ref) < 1e-6


def test_ksg_ties_and_constant(x64):
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, 4, 200).astype(float), rng.normal(size=200),
                  np.full(200, 1.0)], 1)
    mi = np.asarray(pairwise_mutual_information(x, method="ksg", key=jax.random.PRNGKey(0)))
    assert np.all(np.isfinite(mi)) and np.all(mi >= 0)
    assert mi[1, 2] < 0.05


def test_bad_input():
    a = _acts()
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="acts"):
        neuron_entropy(bad)
    with pytest.raises(ValueError, match="acts"):
        pairwise_mutual_information(bad)
    with pytest.raises(ValueError, match="bins"):
        neuron_entropy(a, bins=1)
    with pytest.raises(ValueError, match="bins"):
        pairwise_mutual_information(a, bins=1)
    with pytest.raises(ValueError, match="ndim"):
        neuron_entropy(a[:, 0])
    with pytest.raises(ValueError, match="k \\+ 1"):
        pairwise_mutual_information(a[:3], method="ksg", k=3, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="key"):
        pairwise_mutual_information(a, method="ksg")
    with pytest.raises(ValueError, match="binning"):
        neuron_entropy(a, binning="local")
    with pytest.raises(ValueError, match="method"):
        pairwise_mutual_information(a, method="kde")
    with pytest.raises(ValueError, match="labels"):
        pairwise_mutual_information(None, labels=np.full((5, 2), 12), bins=10)


def test_summary_blocks_and_overall(x64):
    rng = np.random.default_rng(0)
    layers = {"a": rng.normal(size=(200, 4)), "b": rng.normal(size=(200, 3)) ** 3}
    out = diversity_summary(layers, bins=8)
    ent_a = np.asarray(neuron_entropy(layers["a"], bins=8))
    mi_a = np.asarray(pairwise_mutual_information(layers["a"], bins=8))
    assert out["a"].mean_entropy == pytest.approx(ent_a.mean())
    assert out["a"].mean_mi == pytest.approx(offdiag_summary(mi_a)[0])
    assert out["overall"].n_neurons == 7
    assert np.isnan(diversity_summary(layers, mi_method=None)["a"].mean_mi)


def test_rank_models_and_kendall():
    ent = [3.0, 2.5, 2.0, 1.0]
    acc = [0.9, 0.8, 0.7, 0.5]
    r = rank_models(ent, measure="entropy", memorization="heuristic", metric=acc)
    assert r.tau == pytest.approx(1.0) and list(r.order) == [0, 1, 2, 3]
    r = rank_models(ent, measure="entropy", memorization="example", metric=acc)
    assert r.tau == pytest.approx(-1.0) and list(r.order) == [3, 2, 1, 0]
    r = rank_models([0.1, 0.2, 0.3, 0.4], measure="mi", memorization="heuristic", metric=acc)
    assert r.tau == pytest.approx(1.0)
    tau, p = kendall_tau([1, 2, 3], [1, 3, 2])
    assert tau == pytest.approx(scipy.stats.kendalltau([1, 2, 3], [1, 3, 2]).statistic)
    with pytest.raises(ValueError, match="measure"):
        rank_models(ent, measure="loss")


def test_sweep_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    """Finished levels are stored through jaxinfo.checkpoint and not recomputed on a rerun."""
    from jaxinfo.experiments import diversity as div
    from jaxinfo.train import TrainConfig

    cfg = TrainConfig(max_epochs=1, patience_after=1, batch_size=256)
    kw = dict(experiments=("shuffled",), betas=(0.0, 0.5), dataset="digits", seeds=1,
              config=cfg, out_dir=str(tmp_path), progress=False,
              variants=[("best", "test", "global", False)])
    first = div.run_sweep(**kw)
    assert sorted(p.name for p in tmp_path.glob("shuffled_*.json")) == ["shuffled_0.5.json",
                                                                        "shuffled_0.json"]

    def boom(*args, **kwargs):
        raise AssertionError("a finished level was recomputed")

    monkeypatch.setattr(div, "run_config", boom)
    again = div.run_sweep(**kw)
    assert [r["mean_entropy"] for r in again] == [r["mean_entropy"] for r in first]
    with pytest.raises(ValueError, match="checkpoint directory"):
        div.run_sweep(**dict(kw, seeds=2))


def test_digitize_assignment_matches_numpy_and_all_layers_bins():
    """The authors' convention: np.digitize on the histogram edges (the maximum has its own bin),
    one set of 100 edges over every hidden layer together."""
    from jaxinfo.diversity import bin_activations, diversity_summary, neuron_entropy

    rng = np.random.default_rng(5)
    a = rng.normal(size=(400, 3)).astype(np.float64)
    b = 3 * rng.normal(size=(400, 2)) + 1
    both = np.concatenate([a, b], axis=1)
    edges = np.histogram_bin_edges(both, bins=100)
    ref = np.digitize(both, edges) - 1
    with jax.enable_x64(True):
        got = bin_activations(both, bins=100, assignment="digitize")
        assert got.num_labels == 101
        np.testing.assert_array_equal(np.asarray(got.labels), ref)
        assert np.sum(ref == 100) >= 1  # the maximum is alone in its bin
        h = np.asarray(neuron_entropy(both, bins=100, assignment="digitize"))
        for j in range(5):
            p = np.bincount(ref[:, j], minlength=101) / 400
            np.testing.assert_allclose(h[j], -np.sum(p[p > 0] * np.log(p[p > 0])), rtol=1e-12)
        summ = diversity_summary({"l0": a, "l1": b}, bins=100, binning="all_layers",
                                 assignment="digitize", mi_method="binned")
        np.testing.assert_allclose(summ["l1"].mean_entropy, h[3:].mean(), rtol=1e-12)
        np.testing.assert_allclose(summ["overall"].mean_entropy, h.mean(), rtol=1e-12)
        from sklearn.metrics import mutual_info_score

        mi01 = mutual_info_score(ref[:, 0], ref[:, 1])
        per_layer = diversity_summary({"l0": a}, bins=100, binning="all_layers",
                                      assignment="digitize", mi_method="binned")
        mi = np.asarray(pairwise_mutual_information(None, labels=ref[:, :3], bins=101))
        np.testing.assert_allclose(mi[0, 1], mi01, rtol=1e-10)
        assert np.isfinite(per_layer["l0"].mean_mi)
