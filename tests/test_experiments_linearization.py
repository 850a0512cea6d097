"""The linearization-tracking experiment: real GD vs the closed form, on a tiny digits task."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxinfo import empirical_ntk, kernel_matrix
from jaxinfo.data import load_digits
from jaxinfo.experiments.linearization import largest_ntk_eigenvalue, track_linearization
from jaxinfo.train import MLP


def test_real_network_tracks_linearization_early():
    rows = track_linearization(load_digits(), n_train=40, n_eval=40, width=512,
                               steps=(0, 3, 30))
    assert [r.step for r in rows] == [0, 3, 30]
    assert rows[0].rel_distance == 0.0
    assert rows[0].real_loss == rows[0].lin_loss
    # wide net, few steps: the real network moves like its linearization
    assert rows[1].rel_distance < 0.1
    assert rows[2].real_loss < rows[0].real_loss and rows[2].lin_loss < rows[0].lin_loss
    assert abs(rows[2].real_loss - rows[2].lin_loss) < 0.2 * rows[2].real_loss


def test_power_iteration_matches_eigvalsh():
    module = MLP(hidden=(32,), num_classes=3)
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 5))
    params = module.init(jax.random.PRNGKey(1), x[:1])["params"]

    def apply_fn(p, xb):
        return module.apply({"params": p}, xb)

    theta = kernel_matrix(empirical_ntk(apply_fn, params, x, trace_axes=()))
    exact = float(jnp.linalg.eigvalsh(theta)[-1])
    est = largest_ntk_eigenvalue(apply_fn, params, x, jax.random.PRNGKey(2), iterations=200)
    np.testing.assert_allclose(est, exact, rtol=1e-3)
