"""Leave-one-out engine and smooth unique information (jaxinfo.sui)."""
from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from scipy.linalg import expm, solve_continuous_lyapunov

import jaxinfo
import jaxinfo.sui.driver as driver
from jaxinfo import GradientDescent, LOOSolver

# ----------------------------------------------------------------------------- references


def np_loo(J, Jref, r0, n, k, lr, t, continuous, lam):
    """Brute-force leave-one-out of the linearized model with explicit J (numpy float64).

    Independent of jaxinfo: matrix power / expm and linear solves, rows deleted. Returns the
    full weight change, per-sample Δw [n, P], Δf on train [n, n, k], Δf on ref [n, m, k] and
    Δloss [n].
    """
    def train(Js, rs):
        ns = Js.shape[0] // k
        eye = np.eye(Js.shape[0])
        th = Js @ Js.T + ns * lam * eye
        eta = lr / ns
        if t is None:
            e = 0 * eye
        elif continuous:
            e = expm(-eta * t * th)
        else:
            e = np.linalg.matrix_power(eye - eta * th, int(t))
        return Js.T @ -np.linalg.solve(th, (eye - e) @ rs)  # w_t − w0

    w = train(J, r0)
    loss = 0.5 / n * np.sum((r0 + J @ w) ** 2)
    dw, dloss = [], []
    for i in range(n):
        keep = np.arange(n * k) // k != i
        wi = train(J[keep], r0[keep])
        dw.append(wi - w)
        dloss.append(0.5 / (n - 1) * np.sum((r0[keep] + J[keep] @ wi) ** 2) - loss)
    dw = np.array(dw)
    return dict(dw=dw, wsq=np.sum(dw ** 2, 1), df=(dw @ J.T).reshape(n, n, k),
                dref=(dw @ Jref.T).reshape(n, -1, k), dloss=np.array(dloss),
                r_full=(r0 + J @ w).reshape(n, k))


def problem(n, k, p, m=4, seed=0):
    rng = np.random.default_rng(seed)
    J = rng.normal(size=(n * k, p)) / np.sqrt(p)
    Jref = rng.normal(size=(m * k, p)) / np.sqrt(p)
    r0 = rng.normal(size=n * k)
    return J, Jref, r0


def lr_for(J, n, lam, continuous):
    if continuous:
        return 0.5
    return 0.9 * (n - 1) / (np.linalg.eigvalsh(J @ J.T)[-1] + n * lam)


def mlp(params, x):
    h = jax.nn.relu(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    return h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def mlp_params(d, width, k, seed=0, dtype=jnp.float64):
    r = np.random.default_rng(seed)
    return {"Dense_0": {"kernel": jnp.asarray(r.normal(size=(d, width)) / np.sqrt(d), dtype),
                        "bias": jnp.asarray(0.1 * r.normal(size=width), dtype)},
            "Dense_1": {"kernel": jnp.asarray(r.normal(size=(width, k)) / np.sqrt(width), dtype),
                        "bias": jnp.zeros((k,), dtype)}}


# ----------------------------------------------------------------------------- vs brute force

TS = [10, 1000, None]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_loo_matches_bruteforce(x64, k, continuous, lam):
    n, p = 10, 60  # p > nk: Θ positive definite, so t = ∞ with λ = 0 is well posed
    J, Jref, r0 = problem(n, k, p, seed=k)
    lr = lr_for(J, n, lam, continuous)
    theta, theta_ref = J @ J.T, Jref @ J.T
    refs = {t: np_loo(J, Jref, r0, n, k, lr, t, continuous, lam) for t in TS}
    for method in ["auto", "exact", "lanczos"]:
        v = jaxinfo.loo_vectors(theta, r0.reshape(n, k), GradientDescent(lr=lr, t=TS, continuous=continuous, weight_decay=lam), theta_ref=theta_ref, solver=LOOSolver(method=method))
        for j, t in enumerate(TS):
            ref = refs[t]
            what = f"{method} t={t}"
            np.testing.assert_allclose(v.weight_change_sq[j], ref["wsq"], rtol=1e-8, err_msg=what)
            np.testing.assert_allclose(v.ref_change[j], ref["dref"], rtol=0,
                                       atol=1e-9 * np.abs(ref["dref"]).max(), err_msg=what)
            np.testing.assert_allclose(np.sum(v.ref_change[j] ** 2, (1, 2)),
                                       np.sum(ref["dref"] ** 2, (1, 2)), rtol=1e-8, err_msg=what)
            np.testing.assert_allclose(v.train_change[j], ref["df"], rtol=0,
                                       atol=1e-9 * np.abs(ref["df"]).max(), err_msg=what)
            np.testing.assert_allclose(v.train_loss_change[j], ref["dloss"], rtol=1e-8,
                                       atol=1e-12, err_msg=what)
            # Δw from Δα through J: the padded-α identity J_Rᵀα'_R = Jᵀα'
            np.testing.assert_allclose(v.delta_alpha[j] @ J, ref["dw"], rtol=0,
                                       atol=1e-9 * np.abs(ref["dw"]).max(), err_msg=what)
        if method != "exact":
            assert np.all(v.alpha_error_bound <= 1e-9 * np.linalg.norm(r0))


@pytest.mark.parametrize("k", [1, 3])
def test_unique_information_reductions_and_measures(x64, k):
    n, p, lam = 12, 70, 0.02
    J, Jref, r0 = problem(n, k, p, m=5, seed=10 + k)
    lr = lr_for(J, n, lam, False)
    for t in [30, None]:
        ref = np_loo(J, Jref, r0, n, k, lr, t, False, lam)
        dyn = GradientDescent(lr=lr, t=t, weight_decay=lam)
        kw = dict(sigma=0.5, sigma_f=2.0, progress=False)
        u = jaxinfo.unique_information_from_kernel(J @ J.T, r0.reshape(n, k), dyn,
                                                   theta_ref=Jref @ J.T, **kw)
        np.testing.assert_allclose(u.weight_change_sq, ref["wsq"], rtol=1e-8)
        np.testing.assert_allclose(u.weight_si, ref["wsq"] / (2 * 0.25), rtol=1e-8)
        fsq = np.sum(ref["dref"] ** 2, (1, 2))
        np.testing.assert_allclose(u.function_change_sq, fsq / 5, rtol=1e-8)
        np.testing.assert_allclose(u.functional_si, fsq / 5 / (2 * 4.0), rtol=1e-8)
        assert u.num_reference == 5 and u.reduction == "mean" and u.sigma == 0.5
        assert u.method == ("schur" if t is None else u.method) and u.dynamics == dyn
        # each sample's training loss under the full run: ½‖r_t‖², r_t = r0 + Θα
        np.testing.assert_allclose(u.sample_loss, 0.5 * np.sum(ref["r_full"] ** 2, 1),
                                   rtol=1e-8)
        # no reference inputs: the other n − 1 training samples
        us = jaxinfo.unique_information_from_kernel(J @ J.T, r0.reshape(n, k), dyn,
                                                    reduction="sum", **kw)
        others = np.array([np.sum(np.delete(ref["df"][i], i, 0) ** 2) for i in range(n)])
        np.testing.assert_allclose(us.function_change_sq, others, rtol=1e-8)
        assert us.num_reference == n - 1


def test_lanczos_within_stated_bound(x64):
    """Lanczos with few steps (m < dim, no re-orthogonalisation): error ≤ the a-priori bound."""
    n, p = 40, 120
    J, _, r0 = problem(n, 1, p, seed=3)
    theta = J @ J.T
    lr = lr_for(J, n, 0.0, True) * 4
    exact = jaxinfo.loo_vectors(theta, r0[:, None], GradientDescent(lr=lr, t=25.0, continuous=True), solver=LOOSolver(method="exact"))
    for tol in [1e-3, 1e-6, 1e-10]:
        v = jaxinfo.loo_vectors(theta, r0[:, None], GradientDescent(lr=lr, t=25.0, continuous=True), solver=LOOSolver(method="lanczos", tol=tol))
        assert 0 < v.iterations < n - 1
        err = np.linalg.norm(v.delta_alpha[0] - exact.delta_alpha[0], axis=1)
        assert np.all(err <= v.alpha_error_bound), (tol, err.max(), v.alpha_error_bound.max())
        # the bound is relative to ‖α'‖: check it is honest but not vacuous
        alpha_p = exact.delta_alpha[0] + exact.alpha[0]
        assert np.max(err / np.linalg.norm(alpha_p, axis=1)) <= tol
    s = np.linalg.eigvalsh(theta)
    plan = jaxinfo.lanczos_plan(s[0], s[-1], 25.0, eta=lr / (n - 1), continuous=True,
                                tol=1e-6)
    assert plan.reached and plan.rel_bound <= 1e-6 and plan.iterations >= 2


# ----------------------------------------------------------------------------- golden data


def _golden_problem(golden):
    inp, ntk = golden("inputs"), golden("ntk")
    return inp, ntk["ntk_f64"], ntk["test_train_ntk_f64"], inp["r0_f64"].reshape(100, 2)


def _golden_params(inp):
    f = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    return {"Dense_0": {"kernel": f(inp["flax_dense0_kernel"]), "bias": f(inp["flax_dense0_bias"])},
            "Dense_1": {"kernel": f(inp["flax_dense1_kernel"]), "bias": f(inp["flax_dense1_bias"])}}


def _check_f64(ours, ref):
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())


def _check_official_vectors(ours, ref, per_sample_rel):
    ours, ref = ours.reshape(len(ref), -1), ref.reshape(len(ref), -1)
    rel = np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() <= per_sample_rel, rel.max()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-2 * np.abs(ref).max())


def test_golden_stability_vectors(x64, golden):
    inp, theta, theta_te, r0 = _golden_problem(golden)
    v = jaxinfo.loo_vectors(theta, r0, GradientDescent(lr=float(inp["lr"]), t=[1, 10, 100]), theta_ref=theta_te)
    assert v.method == "lanczos"
    # train loss: vectors[i] = L'_{-i}(t) − L(t) for t in (1, 10, 100); quantity = mean_t(·²)
    g = golden("stability_train_loss")
    loss = v.train_loss_change.T
    _check_f64(loss, g["vectors_f64"])
    _check_f64(np.mean(loss ** 2, 1), g["quantities_f64"])
    _check_official_vectors(loss, g["vectors_official"], 5e-3)
    np.testing.assert_allclose(np.mean(loss ** 2, 1), g["quantities_official"], rtol=2e-2)
    np.testing.assert_array_equal(np.argsort(np.mean(loss ** 2, 1)),
                                  np.argsort(g["quantities_official"]))
    # train predictions on the other 99 samples at t = 100; quantity = TOTAL sum of squares
    g = golden("stability_train_pred")
    tc = v.train_change[2]
    others = np.stack([np.delete(tc[i], i, axis=0) for i in range(100)])
    _check_f64(others, g["vectors_f64"])
    _check_f64(np.sum(others ** 2, (1, 2)), g["quantities_f64"])
    _check_official_vectors(others, g["vectors_official"], 1e-2)
    np.testing.assert_allclose(np.sum(others ** 2, (1, 2)), g["quantities_official"], rtol=2e-2)
    np.testing.assert_array_equal(np.argsort(np.sum(others ** 2, (1, 2))),
                                  np.argsort(g["quantities_official"]))
    # test predictions
    g = golden("stability_test_pred")
    _check_f64(v.ref_change[2], g["vectors_f64"])
    _check_f64(np.sum(v.ref_change[2] ** 2, (1, 2)), g["quantities_f64"])
    _check_official_vectors(v.ref_change[2], g["vectors_official"], 1e-2)
    np.testing.assert_allclose(np.sum(v.ref_change[2] ** 2, (1, 2)), g["quantities_official"],
                               rtol=2e-2)
    np.testing.assert_array_equal(np.argsort(np.sum(v.ref_change[2] ** 2, (1, 2))),
                                  np.argsort(g["quantities_official"]))
    # weights (kernel space) and, through the rebuilt model, the weight vectors themselves
    g = golden("stability_weights")
    _check_f64(v.weight_change_sq[2], g["quantities_f64"])
    np.testing.assert_allclose(v.weight_change_sq[2], g["quantities_official"], rtol=2e-2)
    np.testing.assert_allclose(v.weight_change_sq[2],
                               g["quantities_official_large_model_regime"], rtol=2e-2)
    from scipy.stats import spearmanr
    assert spearmanr(v.weight_change_sq[2], g["quantities_official"])[0] > 0.999
    top = lambda a: set(np.argsort(a)[-10:])  # noqa: E731
    assert top(v.weight_change_sq[2]) == top(g["quantities_official"])
    idx = inp["flax_ravel_from_torch_index"]
    params = _golden_params(inp)
    dw = jaxinfo.weight_changes(mlp, params, jnp.asarray(inp["x_train"], jnp.float64),
                                v.delta_alpha[2])
    flat = np.asarray(jax.vmap(lambda tree: ravel_pytree(tree)[0])(dw))
    _check_f64(flat, g["vectors_f64"][:, idx])
    _check_official_vectors(flat, g["vectors_official"][:, idx], 5e-2)
    # the golden model-level Jacobian (torch column order) gives the same vectors
    J = golden("jacobian")["J_train_official"].astype(np.float64)
    _check_official_vectors(v.delta_alpha[2] @ J, g["vectors_official"], 5e-2)


def test_golden_model_level(x64, golden):
    """unique_information on the rebuilt Flax-layout MLP reproduces the golden totals."""
    inp = golden("inputs")
    params = _golden_params(inp)
    x = jnp.asarray(inp["x_train"], jnp.float64)
    xt = jnp.asarray(inp["x_test"], jnp.float64)
    y = jnp.asarray(inp["y_train"], jnp.float64)
    kw = dict(dynamics=GradientDescent(lr=float(inp["lr"]), t=100), reduction="sum",
              progress=False)
    u = jaxinfo.unique_information(mlp, params, x, y, xt, sigma=2.0, **kw)
    _check_f64(u.function_change_sq, golden("stability_test_pred")["quantities_f64"])
    _check_f64(u.weight_change_sq, golden("stability_weights")["quantities_f64"])
    _check_f64(u.weight_si, golden("stability_weights")["quantities_f64"] / 8.0)
    u = jaxinfo.unique_information(mlp, params, x, y, None, **kw)
    _check_f64(u.function_change_sq, golden("stability_train_pred")["quantities_f64"])
    um = jaxinfo.unique_information(mlp, params, x, y, None, **{**kw, "reduction": "mean"})
    _check_f64(um.function_change_sq * 99, golden("stability_train_pred")["quantities_f64"])


# ----------------------------------------------------------------------------- model level


def test_model_level_matches_kernel_level_k1(x64):
    n, d = 15, 3
    params = mlp_params(d, 16, 1, seed=2)
    r = np.random.default_rng(5)
    x, xr = jnp.asarray(r.normal(size=(n, d))), jnp.asarray(r.normal(size=(6, d)))
    y = jnp.asarray(r.normal(size=n))  # [n] accepted when k = 1
    flat, unravel = ravel_pytree(params)
    J = np.asarray(jax.jacrev(lambda w: mlp(unravel(w), x).reshape(-1))(flat))
    Jref = np.asarray(jax.jacrev(lambda w: mlp(unravel(w), xr).reshape(-1))(flat))
    r0 = np.asarray(mlp(params, x)).reshape(-1) - np.asarray(y)
    lam, lr, t = 0.01, 0.3, 40
    u = jaxinfo.unique_information(mlp, params, x, y, xr, dynamics=GradientDescent(lr=lr, t=t, weight_decay=lam), progress=False)
    ref = np_loo(J, Jref, r0, n, 1, lr, t, False, lam)
    np.testing.assert_allclose(u.weight_change_sq, ref["wsq"], rtol=1e-8)
    np.testing.assert_allclose(u.function_change_sq, np.sum(ref["dref"] ** 2, (1, 2)) / 6,
                               rtol=1e-8)


# ----------------------------------------------------------------------------- SGD noise


def test_sgd_noise_matches_dense_bruteforce(x64):
    n, d, width, lam, lr, t, b = 30, 2, 4, 0.1, 0.2, 60, 5
    params = mlp_params(d, width, 1, seed=4)
    r = np.random.default_rng(7)
    x = jnp.asarray(r.normal(size=(n, d)))
    y = jnp.asarray(r.normal(size=(n, 1)))
    res = jaxinfo.sgd_noise_unique_information(mlp, params, x, y, dynamics=GradientDescent(lr=lr, t=t, weight_decay=lam), sgd_batch_size=b)
    # brute force: explicit GD in weight space on the linearized model, dense Lyapunov solve
    flat, unravel = ravel_pytree(params)
    J = np.asarray(jax.jacrev(lambda w: mlp(unravel(w), x).reshape(-1))(flat))
    P = J.shape[1]
    assert P < n  # Σ is then positive definite
    r0 = np.asarray(mlp(params, x) - y).reshape(-1)

    def gd(rows):
        Jr, rr, ns = J[rows], r0[rows], rows.sum()
        w = np.zeros(P)
        for _ in range(t):
            w = w - lr * (Jr.T @ (rr + Jr @ w) / ns + lam * w)
        return w

    w = gd(np.ones(n, bool))
    dw = np.array([gd(np.arange(n) != i) - w for i in range(n)])
    np.testing.assert_allclose(res.delta_w, dw, rtol=0, atol=1e-9 * np.abs(dw).max())
    H = J.T @ J / n + lam * np.eye(P)
    grads = J * (r0 + J @ w)[:, None]  # per-sample gradients at w_t (k = 1)
    dev = grads - grads.mean(0)
    sigma = solve_continuous_lyapunov(H, lr / b * dev.T @ dev / n)
    np.testing.assert_allclose(res.noise_cov, sigma, rtol=0, atol=1e-10 * np.abs(sigma).max())
    si = 0.5 * np.einsum("np,np->n", dw, np.linalg.solve(sigma, dw.T).T)
    np.testing.assert_allclose(res.si, si, rtol=1e-6)
    assert 1 <= res.rank <= P


def test_sgd_noise_errors(x64):
    params = mlp_params(2, 8, 1)
    x = jnp.ones((5, 2)) * jnp.arange(5.0)[:, None]
    y = jnp.zeros((5, 1))
    with pytest.raises(ValueError, match="singular.*weight_decay > 0"):
        jaxinfo.sgd_noise_unique_information(mlp, params, x, y, dynamics=GradientDescent(lr=0.1, t=10), sgd_batch_size=2)
    with pytest.raises(ValueError, match="memory_budget"):
        jaxinfo.sgd_noise_unique_information(mlp, params, x, y, dynamics=GradientDescent(lr=0.1, t=10, weight_decay=0.1), sgd_batch_size=2, memory_budget=1000)


# ----------------------------------------------------------------------------- bad input


def test_bad_input():
    params = mlp_params(3, 8, 2, dtype=jnp.float32)
    x, y = jnp.ones((6, 3)), jnp.zeros((6, 2))
    call = lambda **kw: jaxinfo.unique_information(  # noqa: E731
        mlp, params, kw.pop("x", x), kw.pop("y", y), kw.pop("x_ref", None),
        **{"dynamics": GradientDescent(lr=0.1, t=5), "progress": False, **kw})
    with pytest.raises(ValueError, match="sigma"):
        call(sigma=0.0)
    with pytest.raises(ValueError, match="sigma_f"):
        call(sigma_f=-1.0)
    with pytest.raises(ValueError, match="x_ref"):
        call(x_ref=jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="y_train"):
        call(y=jnp.zeros((6, 3)))
    with pytest.raises(ValueError, match="y_train"):
        call(y=jnp.zeros((6,)))
    with pytest.raises(ValueError, match="x_train"):
        call(x=x.at[2, 1].set(jnp.nan))
    with pytest.raises(ValueError, match="y_train"):
        call(y=y.at[0, 0].set(jnp.inf))
    with pytest.raises(ValueError, match="method"):
        call(solver=LOOSolver(method="magic"))
    with pytest.raises(ValueError, match="reduction"):
        call(reduction="max")
    theta = np.eye(4)
    with pytest.raises(ValueError, match="theta"):
        jaxinfo.unique_information_from_kernel(theta * np.nan, np.ones(4), GradientDescent(lr=0.1, t=3))
    with pytest.raises(ValueError, match="lr=.* too large"):
        jaxinfo.unique_information_from_kernel(theta, np.ones(4), GradientDescent(lr=10.0, t=3), progress=False)
    with pytest.raises(ValueError, match="schur"):
        jaxinfo.unique_information_from_kernel(theta, np.ones(4), GradientDescent(lr=0.1, t=3), solver=LOOSolver(method="schur"))
    singular = np.ones((4, 4))  # rank 1
    with pytest.raises(ValueError, match="weight_decay > 0 or a finite t"):
        jaxinfo.unique_information_from_kernel(singular, np.ones(4), GradientDescent(lr=0.1, t=None))
    with pytest.raises(ValueError, match="r0"):
        jaxinfo.unique_information_from_kernel(theta, np.ones((2, 3)), GradientDescent(lr=0.1, t=3))


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_resume(x64, tmp_path, monkeypatch):
    n, k, p = 14, 2, 50
    J, Jref, r0 = problem(n, k, p, seed=8)
    dyn = GradientDescent(lr=0.2, t=20, weight_decay=0.01)
    kw = dict(theta_ref=Jref @ J.T, solver=LOOSolver(chunk_size=3, method="exact"),
              progress=False)
    full = jaxinfo.unique_information_from_kernel(J @ J.T, r0.reshape(n, k), dyn, **kw)
    original = driver._compute_chunk
    calls = []

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run dies after two finished chunks
        calls.append(args[3][0])
        return original(*args, **kwargs)

    monkeypatch.setattr(driver, "_compute_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jaxinfo.unique_information_from_kernel(J @ J.T, r0.reshape(n, k), dyn,
                                               checkpoint_dir=tmp_path, **kw)
    assert len(list(tmp_path.glob("chunk_*.npz"))) == 2
    calls.clear()

    def counting(*args, **kwargs):
        calls.append(args[3][0])
        return original(*args, **kwargs)

    monkeypatch.setattr(driver, "_compute_chunk", counting)
    resumed = jaxinfo.unique_information_from_kernel(J @ J.T, r0.reshape(n, k), dyn,
                                                     checkpoint_dir=tmp_path, **kw)
    assert calls == [6, 9, 12]  # chunks starting at 0 and 3 were not recomputed
    np.testing.assert_array_equal(resumed.weight_si, full.weight_si)
    np.testing.assert_array_equal(resumed.functional_si, full.functional_si)
    with pytest.raises(ValueError, match="checkpoint directory"):
        jaxinfo.unique_information_from_kernel(J @ J.T, r0.reshape(n, k), dyn.replace(t=21),
                                               checkpoint_dir=tmp_path, **kw)
