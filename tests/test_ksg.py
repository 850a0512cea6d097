"""Exact all-pairs KSG MI against an independent scikit-learn KD-tree reference (float64)."""
import jax
import numpy as np
import pytest
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_regression
from sklearn.neighbors import KDTree, NearestNeighbors

from jaxinfo import _ksg_native
from jaxinfo.diversity import _ksg_all_pairs, pairwise_mutual_information

BACKENDS = ["jax", "numba"]


def _all_pairs(a, backend, **kw):
    """All-pairs KSG from one backend (the JAX kernel's fallback count is dropped)."""
    if backend == "numba":
        return _ksg_native.ksg_all_pairs(a, **kw)
    return _ksg_all_pairs(a, **kw)[0]


def _ref_mi(x, y, k=3):
    """KSG-1 exactly as scikit-learn's ``_compute_mi_cc`` (KD-trees, Chebyshev), no preprocessing."""
    s = x.size
    rad = NearestNeighbors(metric="chebyshev", n_neighbors=k).fit(np.stack([x, y], 1))
    r = np.nextafter(rad.kneighbors()[0][:, -1], 0)
    nx = KDTree(x[:, None], metric="chebyshev").query_radius(x[:, None], r, count_only=True) - 1
    ny = KDTree(y[:, None], metric="chebyshev").query_radius(y[:, None], r, count_only=True) - 1
    mi = digamma(s) + digamma(k) - np.mean(digamma(nx + 1)) - np.mean(digamma(ny + 1))
    return max(0.0, mi)


def _assert_all_pairs(a, mi, k=3, tol=1e-6):
    mi = np.asarray(mi)
    n = a.shape[1]
    for i in range(n):
        for j in range(i + 1, n):
            ref = _ref_mi(a[:, i], a[:, j], k)
            assert abs(mi[i, j] - ref) <= tol, (i, j, mi[i, j], ref)
    np.testing.assert_array_equal(mi, mi.T)
    np.testing.assert_array_equal(np.diag(mi), 0.0)


def _continuous(s, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(s, 6))
    a[:, 1] = a[:, 0] + 0.1 * a[:, 1]               # strongly dependent
    a[:, 2] = rng.standard_cauchy(s)                 # heavy tails
    a[:, 3] = rng.exponential(size=s) ** 2           # skewed
    a[:, 4] = np.sin(3 * a[:, 0]) + 0.05 * a[:, 4]   # non-monotone dependence
    a[:, 5] = rng.uniform(size=s) + 3.0 * (rng.uniform(size=s) < 0.3)  # two clusters
    return a


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("s,k", [(300, 3), (1500, 3), (700, 1), (700, 5)])
def test_ksg_equals_kdtree_every_pair(x64, s, k, backend):
    a = _continuous(s, seed=s + k)
    _assert_all_pairs(a, _all_pairs(a, backend, k=k), k)


@pytest.mark.parametrize("strip", [1, 3, 16, 2000])
def test_native_ksg_any_strip_width_is_exact(x64, strip):
    # the strip width only moves work between the scans; one strip per sample, strips of
    # odd size and a single strip holding every sample all give the exact radii
    a = _continuous(400, seed=9)
    _assert_all_pairs(a, _ksg_native.ksg_all_pairs(a, strip=strip, pair_block=2))


def test_ksg_fallback_exercised_and_exact(x64):
    # tiny strips and windows: most radii are not certified and go to the brute-force pass
    a = _continuous(800, seed=3)
    mi, n_brute = _ksg_all_pairs(a, strip=16, window=2, line_window=1, chunk=16)
    n_brute = np.asarray(n_brute)
    assert n_brute.shape == (15,) and n_brute.min() > 50 and n_brute.sum() > 0.3 * 15 * 800
    _assert_all_pairs(a, mi)
    # default settings: the brute-force share is small on continuous data
    _, n_brute = _ksg_all_pairs(a)
    assert np.asarray(n_brute).mean() < 0.1 * 800


@pytest.mark.parametrize("backend", BACKENDS)
def test_ksg_ties_deterministic(x64, backend):
    rng = np.random.default_rng(7)
    s = 600
    a = rng.normal(size=(s, 6))
    a[:, 0] = np.maximum(a[:, 0], 0)                       # ReLU: half exact zeros
    a[:, 1] = np.maximum(a[:, 1] + 0.5 * a[:, 0], 0)       # ReLU, dependent: (0, 0) duplicates
    a[:, 2] = np.round(a[:, 2] * 2) / 2                    # few distinct values
    a[:, 3] = rng.integers(0, 3, s)                        # heavy ties (3 values)
    a[:, 5] = np.where(rng.uniform(size=s) < 0.2, 1.0, a[:, 5])  # ties at one value
    mi = _all_pairs(a, backend)
    _assert_all_pairs(a, mi)
    # same result on repeated calls and under a permutation of the samples
    rows = rng.permutation(s)
    mi_p = _all_pairs(a[rows], backend)
    np.testing.assert_allclose(np.asarray(mi_p), np.asarray(mi), atol=1e-12)
    np.testing.assert_array_equal(np.asarray(_all_pairs(a, backend)), np.asarray(mi))


@pytest.mark.parametrize("switch_after", [0, 1, 3, 10_000])
def test_native_ksg_switching_layouts_is_exact(x64, switch_after):
    # dense cores with long tails, as in trained networks: points far out in one neuron have
    # large radii spanning many of the other's strips. switch_after=0 sends every point that
    # needs a second strip to the swapped layout, 10,000 never does; 1 and 3 mix the paths
    rng = np.random.default_rng(17)
    s = 900
    core = rng.normal(size=(s, 4)) * 1e-3
    tail = rng.standard_cauchy(size=(s, 4)) * (rng.uniform(size=(s, 4)) < 0.1)
    a = core + tail
    a[:, 1] += 0.5 * a[:, 0]                               # dependent
    a[:, 3] = np.maximum(a[:, 3], 0)                       # ReLU ties on top
    _assert_all_pairs(a, _ksg_native.ksg_all_pairs(a, strip=16, switch_after=switch_after))
    # mixed shapes: at switch_after=3 some pairs stop fewer than 1/16 of their points (they go
    # on in the same strips), others more (the swapped layout is built)
    b = _continuous(400, seed=9)
    _assert_all_pairs(b, _ksg_native.ksg_all_pairs(b, strip=16, switch_after=switch_after))


def _scale_mismatch(s, seed):
    """Neurons of very different scales, as after the authors' L2 (median stds 1e-8 to 1e-1 in
    one network): the Chebyshev distance of a pair is then the wider neuron's alone."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(s, 6))
    a[:, 0] *= 1e3                                          # wide
    a[:, 1] *= 1e-3                                         # narrow
    a[:, 2] = a[:, 0] * 1e-4 + 1e-3 * a[:, 2]              # a narrow function of the wide one
    wide = rng.uniform(size=s) < 0.5                        # half wide, half narrow: each point
    a[:, 3] = np.where(wide, 1e3, 1e-3) * a[:, 3]           # picks its own way
    a[:, 4] = np.maximum(a[:, 4], 0) * 1e-3                 # ReLU zeros (ties: the strips)
    a[:, 5] = np.round(a[:, 5] * 2) / 2 * 1e3              # few wide values, long runs of ties
    return a


@pytest.mark.parametrize("ratio", [0.0, 8.0, np.inf])
def test_native_ksg_one_axis_search_is_exact(x64, ratio):
    # a point whose k-th neighbour along one neuron alone is much farther than along the other
    # is searched in that neuron's sorted order alone; ratio=0 sends every point it can,
    # inf none. The data make every kind of pair: all points on one axis (either side), some
    # points on one axis and the rest in the strips, and none
    a = _scale_mismatch(800, seed=21)
    tables = _ksg_native._tables(a, 16, 3)
    d1 = tables[-1]
    s = a.shape[0]
    for r in range(a.shape[1]):                              # d1: the k-th nearest other value
        brute = np.sort(np.abs(a[:, r][:, None] - a[:, r][None, :]), axis=1)[:, 3]
        np.testing.assert_array_equal(d1[r], brute.astype(np.float32))
    plan = _ksg_native._kernels()["one_axis_plan"]
    kinds = set()
    ch = np.empty(s, np.int8)
    for i in range(a.shape[1]):
        for j in range(i + 1, a.shape[1]):
            run_u, run_v, n_strips = plan(d1[i], d1[j], 8.0, ch)
            if run_u or run_v:
                assert np.count_nonzero(ch == 0) == n_strips
                assert run_u == np.any(ch == 1) and run_v == np.any(ch == 2)
            kinds.add((run_u, run_v, n_strips == 0))
    assert (True, False, True) in kinds                     # every point along u
    assert (True, False, False) in kinds                    # along u, and the rest in strips
    assert (False, True, False) in kinds                    # along v, and the rest in strips
    assert (True, True, False) in kinds                     # both sides in one pair
    assert (False, False, False) in kinds                   # the strips alone
    mi = _ksg_native.ksg_all_pairs(a, strip=16, one_axis_ratio=ratio)
    _assert_all_pairs(a, mi)
    np.testing.assert_array_equal(mi, _ksg_native.ksg_all_pairs(a, strip=16))


@pytest.mark.parametrize("strip", [2, 5, 64])
def test_native_ksg_ties_never_straddle_strips_and_stay_exact(x64, strip):
    # runs of tied values longer than a strip, starting anywhere: every cut moves to a run's
    # end, each strip starts with a new value, and the radii stay exact (KD-tree reference)
    rng = np.random.default_rng(13)
    s = 500
    a = rng.normal(size=(s, 4))
    a[:, 0] = np.maximum(a[:, 0], 0)                          # one run of ~250 zeros
    a[:, 1] = np.repeat(rng.normal(size=50), 10)[rng.permutation(s)]  # 50 runs of 10
    a[:, 2] = np.where(rng.uniform(size=s) < 0.3, -1.0, a[:, 2])      # one run at the minimum
    tables = _ksg_native._tables(a, strip)
    sv, strip_of, starts, nstrips = tables[1], tables[3], tables[4], tables[5]
    for r in range(a.shape[1]):
        b = starts[r, :nstrips[r]]
        assert b[0] == 0 and np.all(np.diff(b) > 0) and np.all(starts[r, nstrips[r]:] == s)
        assert np.all(sv[r, b[1:]] != sv[r, b[1:] - 1])       # no run is cut
        # each sample's strip holds its sorted position
        pos = np.argsort(np.argsort(a[:, r], kind="stable"), kind="stable")
        np.testing.assert_array_equal(strip_of[r], np.searchsorted(b, pos, side="right") - 1)
    _assert_all_pairs(a, _ksg_native.ksg_all_pairs(a, strip=strip, pair_block=3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ksg_raw_public_path(x64, backend):
    a = _continuous(500, seed=11)
    mi = pairwise_mutual_information(a, method="ksg", ksg_convention="raw", ksg_backend=backend)
    _assert_all_pairs(a, mi)


def test_ksg_backends_agree_in_float32():
    # float32 activations (JAX's default): the compiled kernel works in float64 on the same
    # values, the JAX kernel in float32; the estimates agree to float32 round-off
    rng = np.random.default_rng(4)
    z = rng.normal(size=(2000, 8)).astype(np.float32)
    a = z @ rng.normal(size=(8, 10)).astype(np.float32)
    a[:, ::3] = np.maximum(a[:, ::3], 0)
    kw = dict(method="ksg", ksg_convention="raw")
    jx = pairwise_mutual_information(a, ksg_backend="jax", **kw)
    nb = pairwise_mutual_information(a, ksg_backend="numba", **kw)
    assert nb.dtype == jx.dtype == np.float32
    np.testing.assert_allclose(np.asarray(nb), np.asarray(jx), atol=2e-5)
    auto = pairwise_mutual_information(a, **kw)   # numba is installed and JAX runs on the CPU
    np.testing.assert_array_equal(np.asarray(auto), np.asarray(nb))


def test_ksg_sklearn_convention_matches_mutual_info_regression(x64):
    rng = np.random.default_rng(5)
    a = rng.normal(size=(400, 4)) * np.array([1.0, 3.0, 0.2, 10.0])
    a[:, 1] += 2 * np.sin(2 * a[:, 0])
    a[:, 3] += 20 * a[:, 2]
    # jitter off on our side; sklearn's own 1e-10 jitter moves the estimate by far less than 1e-6
    mi = np.asarray(pairwise_mutual_information(a, method="ksg", ksg_convention="sklearn",
                                                jitter=0.0))
    for i in range(4):
        ref = mutual_info_regression(np.delete(a, i, axis=1), a[:, i], n_neighbors=3,
                                     random_state=0)
        np.testing.assert_allclose(np.delete(mi[i], i), ref, atol=1e-6)
    # with jitter (needs a key) the estimate is unchanged at this tolerance
    mi_j = pairwise_mutual_information(a, method="ksg", key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(mi_j), mi, atol=1e-6)


def test_ksg_bad_convention():
    a = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="ksg_convention"):
        pairwise_mutual_information(a, method="ksg", ksg_convention="npeet")
    with pytest.raises(ValueError, match="key"):
        pairwise_mutual_information(a, method="ksg")
    with pytest.raises(ValueError, match="ksg_backend"):
        pairwise_mutual_information(a, method="ksg", ksg_convention="raw", ksg_backend="cuda")
