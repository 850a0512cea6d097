"""The memorization protocol as configuration: presets, constructions, checks, resume, τ."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from jaxinfo.data import load_mnist
from jaxinfo.experiments import memorization as mem
from jaxinfo.experiments.memorization import Protocol, kendall, make_task, train_protocol


def test_presets_put_the_checks_where_the_authors_do():
    a = Protocol.authors()  # 50,000 images, batches of 512: 97 steps an epoch
    assert (a.first_check, a.check_every, a.early_stop_after, a.max_steps) == (97, 970, 19_497,
                                                                               48_500)
    assert a.checks()[:3] == [97, 1067, 2037] and a.checks()[-1] == 48_500
    small = Protocol.authors(3000)  # the same epochs on 3,000 images: 5 steps an epoch
    assert (small.first_check, small.check_every, small.max_steps) == (5, 50, 2500)
    steps = Protocol.authors(3000, schedule="steps")
    assert steps.checks() == a.checks()
    assert Protocol.jaxinfo_v01().binning == "global"
    with pytest.raises(ValueError, match="binning"):
        Protocol(binning="per_layer_typo")
    with pytest.raises(ValueError, match="first_check"):
        Protocol(first_check=0)
    assert a.replace(checkpoint="final").checkpoint == "final"


def test_constructions():
    p = Protocol(dataset="digits")
    c = make_task(p, "colored", 0.25, key=0)
    n = len(c.train.y)
    x = c.train.x.reshape(n, 2, -1)
    colour = (np.abs(x[:, 1]).sum(1) > 0).astype(int)  # which channel holds the image
    assert np.all(np.abs(x[np.arange(n), 1 - colour]).sum(1) == 0)  # the other is zeroed
    assert abs(np.mean(colour == c.train.y) - 0.75) < 0.05  # colour = label XOR Bern(0.25)
    assert abs(np.mean(c.corrupted) - 0.25) < 0.05  # labels flipped with probability 0.25
    vx = c.val.x.reshape(len(c.val.y), 2, -1)
    v_colour = (np.abs(vx[:, 1]).sum(1) > 0).astype(int)
    assert abs(np.mean(v_colour == c.val.y) - 0.5) < 0.1  # uninformative on validation
    s = make_task(p, "shuffled", 0.5, key=0)
    assert s.corrupted.sum() == round(0.5 * len(s.train.y)) and s.num_classes == 10
    # bundled MNIST (stored sorted by class): one fixed shuffle, then 14×14 by striding; the
    # first n_train images train, the next n_val validate, and both hold every class
    m = make_task(Protocol(dataset="mnist", n_train=300, n_val=100), "shuffled", 0.0, key=0)
    perm = np.random.default_rng(mem._BUNDLED_ORDER_SEED).permutation(5000)
    ref = load_mnist(size=28, flatten=False).x[perm[:400], ::2, ::2, 0]
    np.testing.assert_array_equal(m.train.x, ref[:300].reshape(300, -1))
    np.testing.assert_array_equal(m.val.x, ref[300:].reshape(100, -1))
    assert len(np.unique(m.val.y)) == 10 and len(np.unique(m.train.y)) == 10


def _tiny(**changes):
    base = dict(dataset="digits", n_train=512, n_val=200, hidden=(16, 16), batch_size=64,
                first_check=8, check_every=16, val_window=8, max_steps=56,
                early_stop_after=10**6, mi_estimator=None)
    return Protocol(**{**base, **changes})


def test_best_checkpoint_is_the_one_the_rule_picks():
    p = _tiny()
    task = make_task(p, "shuffled", 0.25, key=1)
    run = train_protocol(p, task, jax.random.PRNGKey(0), seeds=2)
    assert run.check_steps.tolist() == [8, 24, 40, 56]
    # the compared value is the validation accuracy averaged over the window before each check
    for c, step in enumerate(run.check_steps):
        np.testing.assert_allclose(run.val_at_checks[c], run.val_curve[step - 8:step].mean(0))
    # outside those windows the accuracy is not computed, and skipping it changes nothing
    evaluated = np.isfinite(run.val_curve[:, 0])
    assert evaluated.sum() == 8 * len(run.check_steps)
    every = train_protocol(p.replace(val_every_step=True), task, jax.random.PRNGKey(0), seeds=2)
    assert np.isfinite(every.val_curve).all()
    np.testing.assert_array_equal(every.val_curve[evaluated], run.val_curve[evaluated])
    np.testing.assert_array_equal(every.best_step, run.best_step)
    for r in range(2):
        vals = run.val_at_checks[:, r]
        assert run.best_step[r] == run.check_steps[int(np.argmax(vals))]  # first maximum
        # the stored parameters are those of training for exactly best_step steps
        again = train_protocol(p.replace(max_steps=int(run.best_step[r])), task,
                               jax.random.PRNGKey(0), seeds=2)
        for a, b in zip(jax.tree_util.tree_leaves(run.best_params),
                        jax.tree_util.tree_leaves(again.final_params)):
            np.testing.assert_allclose(a[r], b[r], rtol=1e-6, atol=1e-7)


def test_early_stopping_freezes_the_seed():
    p = _tiny(early_stop_after=0, loss_threshold=100.0, patience=1, max_steps=200)
    task = make_task(p, "shuffled", 1.0, key=2)  # random labels: accuracy stalls soon
    run = train_protocol(p, task, jax.random.PRNGKey(3), seeds=2)
    assert np.any(run.stop_step < 200)
    for r in range(2):
        stop = int(run.stop_step[r])
        vals = run.val_at_checks[:, r]
        misses = [c for c in range(1, len(vals)) if vals[c] <= vals[:c].max()]
        assert stop == (run.check_steps[misses[0]] if misses else 200)
        # frozen after stopping: no change of the per-step loss curve's parameters
        frozen = train_protocol(p.replace(max_steps=stop, early_stop_after=10**6), task,
                                jax.random.PRNGKey(3), seeds=2)
        for a, b in zip(jax.tree_util.tree_leaves(run.final_params),
                        jax.tree_util.tree_leaves(frozen.final_params)):
            np.testing.assert_allclose(a[r], b[r], rtol=1e-6, atol=1e-7)


def _count_segments(monkeypatch) -> list:
    """Records every compiled training segment run from now on (one entry per call)."""
    segments = []
    real = mem._segment_fn

    def counting(*args, **kwargs):
        run, tx = real(*args, **kwargs)
        return (lambda *a, **kw: segments.append(1) or run(*a, **kw)), tx

    monkeypatch.setattr(mem, "_segment_fn", counting)
    return segments


def test_interrupted_sweep_resumes(tmp_path, monkeypatch):
    p = _tiny(max_steps=24)
    full = mem.run_memorization(p, "shuffled", levels=(0.0, 0.5), seeds=1,
                                out_dir=str(tmp_path / "a"), progress=False)
    original = mem.measure
    calls = []

    def dies_on_second_level(protocol, task, run, *, key=0):
        calls.append(key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(protocol, task, run, key=key)

    monkeypatch.setattr(mem, "measure", dies_on_second_level)
    with pytest.raises(KeyboardInterrupt):
        mem.run_memorization(p, "shuffled", levels=(0.0, 0.5), seeds=1,
                             out_dir=str(tmp_path / "b"), progress=False)
    monkeypatch.setattr(mem, "measure", original)
    segments = _count_segments(monkeypatch)
    resumed = mem.run_memorization(p, "shuffled", levels=(0.0, 0.5), seeds=1,
                                   out_dir=str(tmp_path / "b"), progress=False)
    assert segments == []  # level 0 was measured, level 0.5 fully trained: nothing retrained
    for a, b in zip(full, resumed):
        for key in ("mean_entropy", "val_acc", "best_step"):
            assert a[key] == pytest.approx(b[key], rel=1e-6)
    with pytest.raises(ValueError, match="checkpoint directory"):
        mem.run_memorization(p.replace(lr=2e-3), "shuffled", levels=(0.0,), seeds=1,
                             out_dir=str(tmp_path / "b"), progress=False)


def test_training_interrupted_between_checks_resumes_bit_for_bit(tmp_path, monkeypatch):
    # killed in the middle of a level's training: the resumed run restarts from the last
    # check's stored state and ends with exactly the uninterrupted run's networks and curves
    from jaxinfo.checkpoint import open_store

    p = _tiny()
    task = make_task(p, "colored", 0.25, key=3)
    whole = train_protocol(p, task, jax.random.PRNGKey(3), seeds=2)
    store = open_store(str(tmp_path / "level"), "fp", kind="memorization")
    real, calls = mem._segment_fn, []

    def dies_in_third_check(*args, **kwargs):
        run, tx = real(*args, **kwargs)

        def counted(*a, **kw):
            calls.append(1)
            if len(calls) == 5:  # two segments per check: the 3rd check's second segment
                raise KeyboardInterrupt
            return run(*a, **kw)
        return counted, tx

    monkeypatch.setattr(mem, "_segment_fn", dies_in_third_check)
    with pytest.raises(KeyboardInterrupt):
        train_protocol(p, task, jax.random.PRNGKey(3), seeds=2, store=store)
    monkeypatch.setattr(mem, "_segment_fn", real)
    assert int(store.load("train_state")["checks_done"]) == 2
    resumed = train_protocol(p, task, jax.random.PRNGKey(3), seeds=2, store=store)
    for a, b in zip(jax.tree_util.tree_leaves((whole.best_params, whole.final_params)),
                    jax.tree_util.tree_leaves((resumed.best_params, resumed.final_params))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in ("best_step", "stop_step", "val_at_checks", "val_curve", "loss_curve"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(resumed, name))


def test_kendall_tau_and_bootstrap():
    rows = []
    for lv in (0.0, 0.25, 0.5):
        for s in range(3):
            rows.append(dict(layer="overall", level=lv, seed=s, mean_entropy=1.0 + lv + 0.01 * s,
                             mean_mi=0.5 - lv, val_acc=0.9 - lv))
    # example-level memorization: more noise → higher entropy and lower accuracy
    res = kendall(rows, "entropy", "example")
    assert res.tau == pytest.approx(1.0) and res.low == pytest.approx(1.0)
    assert np.all(res.per_seed == 1.0)
    assert kendall(rows, "mi", "example").tau == pytest.approx(1.0)
    assert kendall(rows, "entropy", "heuristic").tau == pytest.approx(-1.0)


def test_kendall_against_the_level_order():
    from scipy.stats import kendalltau

    # colored: accuracy should rise with the colour noise e; two chance-level networks
    # (e = 0, 0.125) come out in the wrong order by accuracy, as happens at full size
    levels = (0.0, 0.125, 0.25, 0.375)
    acc = {0.0: 0.501, 0.125: 0.498, 0.25: 0.58, 0.375: 0.70}
    mi = {0.0: 1.0, 0.125: 0.55, 0.25: 0.50, 0.375: 0.42}  # falls with e: the expected order
    rows = [dict(layer="overall", level=lv, seed=s, mean_entropy=float(-lv), mean_mi=mi[lv],
                 val_acc=acc[lv] + 1e-4 * s) for lv in levels for s in range(2)]
    by_acc = kendall(rows, "mi", "heuristic")
    by_level = kendall(rows, "mi", "heuristic", against="level")
    assert by_acc.tau == pytest.approx(kendalltau([-mi[v] for v in levels],
                                                  [acc[v] for v in levels]).statistic)
    assert by_acc.tau < 1.0 and by_level.tau == pytest.approx(1.0)
    assert by_level.low == by_level.high == pytest.approx(1.0)
    # shuffled: accuracy should fall with β; entropy rising with β predicts it (sign −1)
    rows_s = [dict(r, mean_entropy=float(r["level"])) for r in rows]
    assert kendall(rows_s, "entropy", "example", against="level").tau == pytest.approx(1.0)
    # colored: entropy falling with e (rows: −e) is the wrong direction for heuristic
    assert kendall(rows, "entropy", "heuristic", against="level").tau == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="against"):
        kendall(rows, "mi", "heuristic", against="seed")


def test_pooled_replicates_are_the_seeds_of_one_sweep():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    levels = (0.0, 0.25, 0.5, 0.75)

    def sweep(seeds):  # one replicate: every level × its own seeds 0..seeds-1, two layers
        return [dict(mode="shuffled", layer=layer, level=lv, seed=s,
                     mean_entropy=float(rng.normal()), mean_mi=float(rng.normal()),
                     val_acc=float(rng.uniform()))
                for lv in levels for s in range(seeds) for layer in ("overall", "Dense_0")]

    reps = [sweep(1), sweep(2), sweep(1)]
    pooled = mem.pool_replicates(reps)
    assert len(pooled) == sum(map(len, reps))
    assert sorted({r["seed"] for r in pooled}) == [0, 1, 2, 3]
    assert {(r["replicate"], r["seed"]) for r in pooled} == {(0, 0), (1, 1), (1, 2), (2, 3)}
    assert all(r["seed"] == 0 for r in reps[2])  # the inputs are not changed
    # τ of the pooled rows = τ of the averages over all four seeds (computed here by hand)
    over = lambda col: [np.mean([r[col] for r in pooled  # noqa: E731
                                 if r["level"] == lv and r["layer"] == "overall"])
                        for lv in levels]
    want = kendalltau(over("mean_mi"), over("val_acc")).statistic  # example: high MI is good
    res = mem.kendall(pooled, "mi", "example")
    assert res.tau == pytest.approx(want)
    assert len(res.per_seed) == 4
    for bad in ([reps[0], []], [reps[0], [dict(r, level=0.9) for r in reps[1]]],
                [reps[0], [r for r in reps[1] if r["layer"] == "overall"]],
                [reps[0] + [dict(r, mode="colored") for r in reps[1]]]):
        with pytest.raises(ValueError):
            mem.pool_replicates(bad)


def test_measure_variants_reuse_the_trained_networks(tmp_path, monkeypatch):
    p = _tiny(max_steps=24)
    out = str(tmp_path / "sweep")
    rows = mem.run_memorization(p, "colored", levels=(0.0, 0.5), seeds=2, out_dir=out,
                                progress=False)
    curves = os.path.join(out, "colored_0.5", "curves.npz")
    with np.load(curves) as z:
        kept = dict(z)
    os.remove(curves)  # a level whose curves were not kept (only its training state)
    segments = _count_segments(monkeypatch)
    variants = {"same": p, "final": p.replace(checkpoint="final"),
                "per_neuron": p.replace(binning="per_neuron", assignment="histogram")}
    got = mem.measure_variants(p, "colored", variants, out_dir=out, levels=(0.0, 0.5), seeds=2,
                               progress=False)
    assert segments == []  # nothing retrained
    with np.load(curves) as z:  # written again from the training state, unchanged
        assert sorted(z) == sorted(kept)
        for name in kept:
            np.testing.assert_array_equal(z[name], kept[name])
    key = lambda r: (r["level"], r["seed"], r["layer"])  # noqa: E731
    assert [key(r) for r in got["same"]] == [key(r) for r in rows]
    for a, b in zip(got["same"], rows):
        assert a["mean_entropy"] == b["mean_entropy"] and a["val_acc"] == b["val_acc"]
    # the final-checkpoint variant measures the last parameters: train again to compare
    task = mem.make_task(p, "colored", 0.5, key=1)
    run = mem.train_protocol(p, task, jax.random.PRNGKey(1), seeds=2)
    direct = mem.measure(p.replace(checkpoint="final"), task, run._replace(params=run.final_params),
                         key=1)
    mine = [r for r in got["final"] if r["level"] == 0.5]
    for a, b in zip(mine, direct):
        np.testing.assert_allclose(a["mean_entropy"], b["mean_entropy"], rtol=1e-5)
        np.testing.assert_allclose(a["val_acc"], b["val_acc"])
    assert any(a["mean_entropy"] != b["mean_entropy"]
               for a, b in zip(got["per_neuron"], got["same"]))
    # cached: a second call reads the stored rows
    monkeypatch.setattr(mem, "measure", lambda *a, **k: pytest.fail("measured again"))
    again = mem.measure_variants(p, "colored", variants, out_dir=out, levels=(0.0, 0.5), seeds=2,
                                 progress=False)
    assert json.dumps(again) == json.dumps(got)  # (NaN MI: mi_estimator is None here)
    # the figures plot the stored curves, and say which levels have none
    pytest.importorskip("matplotlib")
    from jaxinfo.plots import memorization_figures
    os.remove(os.path.join(out, "colored_0", "curves.npz"))
    _, training = memorization_figures(got["same"], out)
    acc_ax = training.axes[0]
    assert [line.get_label() for line in acc_ax.lines if not line.get_label().startswith("_")] \
        == ["0.5"]
    assert [t.get_text() for t in acc_ax.texts] == ["no curves stored for level 0"]
    with pytest.raises(ValueError, match="without '/'"):
        mem.measure_variants(p, "colored", {"a/b": p}, out_dir=out, levels=(0.0, 0.5), seeds=2,
                             progress=False)
    with pytest.raises(ValueError, match="retraining"):
        mem.measure_variants(p, "colored", {"lr": p.replace(lr=0.1)}, out_dir=out,
                             levels=(0.0, 0.5), seeds=2, progress=False)
