"""Replication of Bansal, Pruthi & Belinkov (2022), Table 2, under named protocols; resumable.

    python benchmarks/run_memorization.py --protocol authors-epochs --dataset mnist \\
        --seeds 1 --mi binned --out benchmarks/memorization_runs/authors_epochs_mnist

Protocols (jaxinfo.experiments.memorization.Protocol): ``authors-epochs`` (their schedule in
epochs of this training set), ``authors-steps`` (their step numbers, as on 50,000 images),
``v01`` (what jaxinfo 0.1 ran). ``--mi`` overrides the MI estimator (``ksg`` is the authors';
``binned`` is faster), ``--n-eval`` the number of evaluation images, ``--set FIELD=VALUE``
any other Protocol field (``--set l2=0.0``: the authors' protocol without the weight penalty).
Every level's training state and rows are checkpointed under ``--out``: rerun the same command
to resume. Prints and writes (``--out``/summary.json, summary.md) Kendall τ per mode and
measure with the bootstrap interval over seeds, and the wall time per model.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import time

import numpy as np

from jaxinfo.experiments.memorization import MEMORIZATION, Protocol, kendall, run_memorization
from _timing import parse_with_platform  # noqa: E402


def protocol_for(name: str, dataset: str, n_train: int | None, **changes) -> Protocol:
    if name == "v01":
        return Protocol.jaxinfo_v01(**changes)
    n = n_train or {"mnist": 4000, "fashion_mnist": 50_000, "digits": 1437}[dataset]
    schedule = name.split("-")[1]
    return Protocol.authors(n, schedule=schedule, dataset=dataset, **changes)


def add_set_arg(ap: argparse.ArgumentParser) -> None:
    """``--set FIELD=VALUE`` (repeatable): another Protocol field; see :func:`set_changes`."""
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="another Protocol field (a training ablation), e.g. --set l2=0.0; the "
                         "value is a Python literal")


def set_changes(specs: list[str]) -> dict:
    """``{field: value}`` of ``--set FIELD=VALUE`` options (values as Python literals)."""
    return {field: ast.literal_eval(value)
            for field, _, value in (spec.partition("=") for spec in specs)}


def add_key_arg(ap: argparse.ArgumentParser) -> None:
    """``--key``: level ``j`` of a mode draws its data corruption and initialization from
    ``key·1000 + j``; another key is an independent replicate of the sweep."""
    ap.add_argument("--key", type=int, default=0,
                    help="the sweep's key (default 0); another key: an independent replicate")


def add_sweep_args(ap: argparse.ArgumentParser) -> None:
    """The options that name a stored sweep for the scripts that read one (its protocol is
    part of every level's fingerprint): ``--protocol``, ``--dataset``, ``--n-train``,
    ``--seeds``, ``--mi``, ``--set``, ``--key``; :func:`sweep_protocol` turns them into the
    sweep's Protocol."""
    ap.add_argument("--protocol", default="authors-epochs",
                    help="the sweep's --protocol, --dataset, --n-train, --seeds, --mi, --set")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--seeds", type=int, required=True)
    ap.add_argument("--mi", default="binned")
    add_set_arg(ap)
    add_key_arg(ap)


def sweep_protocol(args: argparse.Namespace) -> Protocol:
    """The Protocol of the sweep named by :func:`add_sweep_args`' options."""
    return protocol_for(args.protocol, args.dataset, args.n_train, mi_estimator=args.mi,
                        **set_changes(args.set))


def add_level_args(ap: argparse.ArgumentParser) -> None:
    """``--run`` (a stored sweep's --out folder), ``--mode`` and ``--level``: one level of it."""
    ap.add_argument("--run", required=True, help="the stored sweep (run_memorization --out)")
    ap.add_argument("--mode", required=True, choices=["colored", "shuffled"])
    ap.add_argument("--level", type=float, required=True)


def level_key(mode: str, level: float, key: int = 0) -> int:
    """The integer key of one level in a sweep run with ``key`` (as :func:`run_memorization`:
    level ``j`` of a mode uses ``key·1000 + j`` for its task and initialization)."""
    from jaxinfo.experiments.memorization import COLORED_LEVELS, SHUFFLED_LEVELS
    return int(key) * 1000 + list(COLORED_LEVELS if mode == "colored"
                                  else SHUFFLED_LEVELS).index(level)


def load_level(run_dir: str, p: Protocol, mode: str, level: float, seeds: int, key: int = 0):
    """``(task, run)`` of one finished level of a stored sweep: its training state is read
    back (no step is rerun; a level whose state is missing is trained again)."""
    import jax

    from jaxinfo.checkpoint import fingerprint, open_store
    from jaxinfo.experiments.memorization import make_task, train_protocol
    fp = fingerprint(protocol=repr(p), mode=mode, level=level, seeds=seeds, key=key)
    store = open_store(f"{run_dir}/{mode}_{level:g}", fp, kind="memorization", mode=mode,
                       level=level, seeds=seeds, protocol=repr(p))
    j = level_key(mode, level, key)
    task = make_task(p, mode, level, key=j)
    return task, train_protocol(p, task, jax.random.PRNGKey(j), seeds=seeds, store=store)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="authors-epochs",
                    choices=["authors-epochs", "authors-steps", "v01"])
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist", "digits"])
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--modes", default="colored,shuffled")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--mi", default=None, choices=["ksg", "binned", "none"])
    ap.add_argument("--n-eval", type=int, default=None)
    ap.add_argument("--checkpoint", default=None, choices=["best", "final"])
    add_set_arg(ap)
    add_key_arg(ap)
    ap.add_argument("--out", required=True)
    ap.add_argument("--figures", default=None,
                    help="path prefix: <prefix>_measures.png and <prefix>_training.png")
    args = parse_with_platform(ap)

    changes = {}
    if args.mi:
        changes["mi_estimator"] = None if args.mi == "none" else args.mi
    if args.n_eval:
        changes["n_eval"] = args.n_eval
    if args.checkpoint:
        changes["checkpoint"] = args.checkpoint
    protocol = protocol_for(args.protocol, args.dataset, args.n_train,
                            **changes, **set_changes(args.set))
    os.makedirs(args.out, exist_ok=True)
    print(protocol, flush=True)
    command = " ".join(os.sys.argv)
    summary = {"protocol": repr(protocol), "command": command, "modes": {}}
    modes = args.modes.split(",")
    old_path = os.path.join(args.out, "summary.json")
    old_modes = {}
    if os.path.exists(old_path):  # modes of an earlier invocation on the same sweep are kept
        with open(old_path) as f:
            old = json.load(f)
        if old.get("protocol") == repr(protocol):
            # "command" stays the invocation that started the folder; each mode has its own
            summary["command"] = old.get("command", command)
            old_modes = old["modes"]
            summary["modes"] = {m: v for m, v in old_modes.items() if m not in modes}
    all_rows = []
    for mode in modes:
        t0 = time.perf_counter()
        rows = run_memorization(protocol, mode, seeds=args.seeds, out_dir=args.out,
                                key=args.key)
        all_rows += rows
        # wall time of this invocation only (levels found finished cost ~0 s); the training time
        # of every level, however many invocations it took, is in the rows
        train_s = sum(r["train_seconds_per_model"] for r in rows if r["layer"] == "overall")
        if json.loads(json.dumps(rows, default=float)) == old_modes.get(mode, {}).get("rows"):
            summary["modes"][mode] = old_modes[mode]  # nothing new: the stored entry unchanged
        else:
            summary["modes"][mode] = {"rows": rows, "command": command,
                                      "wall_s_this_invocation": time.perf_counter() - t0,
                                      "train_s_all_models": train_s}
            for measure in ("entropy", "mi"):
                if measure == "mi" and protocol.mi_estimator is None:
                    continue
                res = kendall(rows, measure, MEMORIZATION[mode])
                summary["modes"][mode][measure] = (res._asdict()
                                                   | {"per_seed": res.per_seed.tolist()})
        trend = {}
        for r in rows:
            if r["layer"] == "overall":
                trend.setdefault(r["level"], []).append((r["mean_entropy"], r["mean_mi"],
                                                         r["val_acc"], r["best_step"]))
        for level, vals in sorted(trend.items()):
            v = np.array(vals, float)
            print(f"{mode} level {level:g}: entropy {v[:, 0].mean():.4f} MI {v[:, 1].mean():.4f} "
                  f"val acc {v[:, 2].mean():.4f} best step {v[:, 3].mean():.0f}", flush=True)
    summary["modes"] = dict(sorted(summary["modes"].items()))  # same order however run
    lines = [f"protocol `{args.protocol}` on `{args.dataset}`, {args.seeds} seed(s)", "",
             "| mode | measure | τ | 95 % bootstrap | per seed | train s / model |",
             "|---|---|---|---|---|---|"]
    for mode, got in summary["modes"].items():
        secs = np.mean([r["train_seconds_per_model"] for r in got["rows"]])
        for measure in ("entropy", "mi"):
            if measure in got:
                res = got[measure]
                lines.append(f"| {mode} | {measure} | {res['tau']:.2f} | [{res['low']:.2f}, "
                             f"{res['high']:.2f}] | {np.round(res['per_seed'], 2).tolist()} "
                             f"| {secs:.0f} |")
    print("\n".join(lines))
    if args.figures:
        from jaxinfo.plots import memorization_figures
        measures, training = memorization_figures(all_rows, args.out, protocol)
        measures.savefig(f"{args.figures}_measures.png", dpi=110)
        training.savefig(f"{args.figures}_training.png", dpi=110)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
