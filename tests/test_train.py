"""optax training: vmapped seeds, best-validation checkpoint, early stopping."""
import jax
import numpy as np
import pytest

from jaxinfo.data import load_digits, split
from jaxinfo.train import TrainConfig, accuracy, init_mlp, train_classifier


def test_train_mlp_learns_and_keeps_best():
    tr, va = split(load_digits(), [600, 300], 0)
    module, params = init_mlp(jax.random.PRNGKey(0), 64, 10, hidden=(32, 32), num_seeds=2)
    apply_fn = lambda p, x: module.apply({"params": p}, x)
    cfg = TrainConfig(batch_size=128, max_epochs=25, patience_after=5, patience=2,
                      loss_threshold=10.0)
    res = train_classifier(apply_fn, params, tr.x, tr.y, va.x, va.y,
                           key=jax.random.PRNGKey(1), config=cfg, progress=False)
    assert res.params["Dense_0"]["kernel"].shape == (2, 64, 32)
    assert np.all(res.best_val_acc > 0.8)
    for r in range(2):
        p = jax.tree.map(lambda v: v[r], res.params)
        acc = float(accuracy(apply_fn, p, va.x, va.y))
        assert acc == pytest.approx(res.best_val_acc[r])
        assert acc == pytest.approx(np.nanmax(res.val_acc[:, r]))
        assert res.val_acc[res.best_epoch[r] - 1, r] == pytest.approx(acc)
    assert np.all(res.epochs_run <= 25)
    assert np.all(res.train_loss[0] > np.nanmin(res.train_loss, axis=0))
    # deterministic given keys
    res2 = train_classifier(apply_fn, params, tr.x, tr.y, va.x, va.y,
                            key=jax.random.PRNGKey(1), config=cfg, progress=False)
    np.testing.assert_allclose(res2.best_val_acc, res.best_val_acc)


def test_train_errors():
    module, params = init_mlp(jax.random.PRNGKey(0), 4, 2, hidden=(3,), num_seeds=1)
    apply_fn = lambda p, x: module.apply({"params": p}, x)
    x = np.ones((5, 4), np.float32)
    y = np.zeros(5, np.int32)
    with pytest.raises(ValueError, match="lr"):
        train_classifier(apply_fn, params, x, y, x, y, key=jax.random.PRNGKey(0),
                         config=TrainConfig(lr=-1.0), progress=False)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="train_x"):
        train_classifier(apply_fn, params, bad, y, x, y, key=jax.random.PRNGKey(0),
                         progress=False)
