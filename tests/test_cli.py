"""The configuration commands of the ``jaxinfo`` command line (tiny sizes on digits)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxinfo.cli import main
from jaxinfo.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# tiny: 36 digits 4-vs-9, MLP width 32, exact leave-one-out in 6 checkpointed chunks of 6
TINY = ["data.name=digits", "data.n=36", "data.n_test=20", "model.width=32", "dynamics.lr=0.1",
        "dynamics.t=50", "sui.method=exact", "sui.chunk_size=6", "output.figures=false"]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _cli(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "jaxinfo.cli", *map(str, args)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=timeout)


def test_shipped_configs_are_valid():
    for command in ("sui", "detect", "summarize", "subpopulations", "sources"):
        cfg = load_config(command, CONFIGS / f"{command}_mnist.toml")
        assert cfg["data"]["name"] == "mnist"


# ----------------------------------------------------------------------------- bad configs

BAD = {
    "unknown key": ("[dynamics]\nlearning_rate = 0.1\n", [], "dynamics.learning_rate"),
    "unknown table": ("[optimizer]\nlr = 0.1\n", [], "optimizer"),
    "wrong type": ('[dynamics]\nlr = "fast"\n', [], "dynamics.lr: expected a number"),
    "wrong type (bool for int)": ("[data]\nn = true\n", [], "data.n: expected an integer"),
    "bad choice": ('[sui]\nmethod = "magic"\n', [], "sui.method: expected one of"),
    "out of range": ("[dynamics]\nlr = -1.0\n", [], "dynamics.lr: expected a number > 0"),
    "missing file": ('[data]\nname = "no_such_data.npz"\n', [], "data.name: file"),
    "bad module": ('[model]\nkind = "no_such_module_xyz:build"\n', [], "model.kind"),
    "unknown --set key": ("", ["dynamics.steps=3"], "dynamics.steps"),
    "wrong --set type": ("", ["data.n=many"], "data.n: expected an integer"),
    "bad TOML": ("[data\n", [], "invalid TOML"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_config_exit_2_one_line_nothing_written(case, tmp_path, capsys):
    text, sets, needle = BAD[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert main(["sui", str(cfg), "--out", str(out), *_sets(sets)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_missing_config_file_and_real_exit_status(tmp_path):
    out = tmp_path / "out"
    r = _cli("detect", tmp_path / "nope.toml", "--out", out, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "nope.toml" in r.stderr and not out.exists()


def test_data_dependent_check_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["sui", str(CONFIGS / "sui_mnist.toml"), "--out", str(out),
               *_sets(["data.name=digits", "data.n=5000"])])
    assert rc == 2 and "data.n" in capsys.readouterr().err and not out.exists()


def test_set_overrides_are_typed():
    cfg = load_config("detect", CONFIGS / "detect_mnist.toml",
                      ["dynamics.t=inf", "data.classes=[1, 7]", "data.name=digits",
                       "corruption.fraction=0.2", "detect.times=[10, \"inf\"]"])
    assert cfg["dynamics"]["t"] == float("inf") and cfg["data"]["classes"] == [1, 7]
    assert cfg["corruption"]["fraction"] == 0.2 and cfg["detect"]["times"] == [10, float("inf")]
    with pytest.raises(ConfigError, match="corruption.fraction"):
        load_config("detect", CONFIGS / "detect_mnist.toml", ["corruption.fraction=2"])


# ----------------------------------------------------------------------------- valid runs

def test_detect_label_noise_summary(tmp_path):
    out = tmp_path / "det"
    sets = TINY[:6] + ["output.figures=false", "detect.times=[50]", "corruption.fraction=0.2",
                       "output.progress=false"]
    assert main(["detect", str(CONFIGS / "detect_mnist.toml"), "--out", str(out),
                 *_sets(sets)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("auroc", "average_precision"):
        assert set(summary[key]) == {"weight_si", "functional_si", "loss", "random"}
        assert all(0.0 <= v <= 1.0 for v in summary[key].values())
    assert summary["n_corrupted"] == 7
    assert (out / "detection.csv").exists() and (out / "detection_scores.csv").exists()


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    """An uninterrupted `jaxinfo sui` run of the tiny config (6 chunks)."""
    out = tmp_path_factory.mktemp("fresh") / "run"
    r = _cli("sui", CONFIGS / "sui_mnist.toml", "--out", out, *_sets(TINY))
    assert r.returncode == 0, r.stderr[-2000:]
    (out.parent / "stderr.txt").write_text(r.stderr)
    return out


def test_progress_bar_quiet_in_a_log(fresh_run):
    """stderr is a pipe here (like a log file): no per-chunk redraws of the progress bar."""
    err = (fresh_run.parent / "stderr.txt").read_text()
    assert err.count("leave-one-out") <= 3, err   # first draw, at most a 30 s redraw, close


def test_valid_sui_config(fresh_run):
    lines = (fresh_run / "scores.csv").read_text().splitlines()
    assert lines[0] == "index,label,weight_si,functional_si,training_loss"
    assert len(lines) == 37
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert set(rows[:, 1]) <= {4.0, 9.0} and (rows[:, 2:] >= 0).all()
    summary = json.loads((fresh_run / "summary.json").read_text())
    assert summary["n"] == 36 and summary["units"] == "nats" and summary["resumed_pieces"] == 0
    assert len(list((fresh_run / "checkpoints" / "sui").glob("chunk_*.npz"))) == 6


def test_resume_after_kill_then_force(fresh_run, tmp_path, capsys):
    out = tmp_path / "run"
    chunks = out / "checkpoints" / "sui"
    # the run stops right after its second finished chunk (jaxinfo.checkpoint's test hook),
    # where it is killed: a deterministic interruption mid-run
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               JAXINFO_PAUSE_AFTER_SAVES="2")
    proc = subprocess.Popen([sys.executable, "-m", "jaxinfo.cli", "sui",
                             str(CONFIGS / "sui_mnist.toml"), "--out", str(out), *_sets(TINY)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and not (chunks / "chunk_000001.npz").exists():
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in chunks.glob("chunk_*.npz")}
    assert sorted(done) == ["chunk_000000.npz", "chunk_000001.npz"]  # killed mid-run
    assert not (out / "scores.csv").exists()

    r = _cli("sui", CONFIGS / "sui_mnist.toml", "--out", out, *_sets(TINY))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming: {len(done)} finished pieces" in r.stdout
    for name, mtime in done.items():  # finished chunks were loaded, not recomputed
        assert (chunks / name).stat().st_mtime_ns == mtime
    assert len(list(chunks.glob("chunk_*.npz"))) == 6
    assert (out / "scores.csv").read_bytes() == (fresh_run / "scores.csv").read_bytes()
    assert json.loads((out / "summary.json").read_text())["resumed_pieces"] == len(done)

    # another configuration into the same directory is refused (exit 2), --force starts over
    other = _sets(TINY + ["dynamics.t=40"])
    assert main(["sui", str(CONFIGS / "sui_mnist.toml"), "--out", str(out), *other]) == 2
    assert main(["sui", str(CONFIGS / "sui_mnist.toml"), "--out", str(out), "--force",
                 *_sets(TINY)]) == 0
    assert "resuming" not in capsys.readouterr().out
    for name, mtime in done.items():
        assert (chunks / name).stat().st_mtime_ns != mtime
    assert (out / "scores.csv").read_bytes() == (fresh_run / "scores.csv").read_bytes()


def test_own_npz_dataset(tmp_path, monkeypatch):
    """A user's .npz (x, y) scored through --set, the path relative to the working directory."""
    from jaxinfo.data import load_digits

    d = load_digits((1, 7))
    np.savez(tmp_path / "mine.npz", x=d.x[:30].reshape(30, 8, 8), y=d.y[:30])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    sets = ["data.name=mine.npz", "data.classes=[]", "data.n=24", "data.n_test=6",
            "model.width=16", "dynamics.lr=0.1", "dynamics.t=20", "output.progress=false"]
    assert main(["sui", str(CONFIGS / "sui_mnist.toml"), "--out", str(out), *_sets(sets)]) == 0
    lines = (out / "scores.csv").read_text().splitlines()
    assert len(lines) == 25 and {int(l.split(",")[1]) for l in lines[1:]} <= {1, 7}
    assert (out / "sui_most_least.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command,sets", [
    ("summarize", ["summarize.fractions=[0.0, 0.5]", "summarize.seeds=2",
                   "summarize.strategies=[\"least_informative\", \"random\"]"]),
    ("subpopulations", ["subpopulations.fractions=[1.0, 0.2]"]),
    ("sources", ["sources.n_per_source=10", "data.size=8"]),
])
def test_other_commands_tiny(command, sets, tmp_path):
    out = tmp_path / command
    base = TINY[:6] + ["output.progress=false", "output.figures=true", "sui.method=lanczos"]
    assert main([command, str(CONFIGS / f"{command}_mnist.toml"), "--out", str(out),
                 *_sets(base + sets)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == command
    if command == "summarize":
        assert len(summary["random"]["mean_accuracy"]) == 2
        assert summary["least_informative"]["fractions"] == [0.0, 0.5]
    elif command == "subpopulations":
        assert set(summary["mean_functional_si"]) == {"0", "1"}
    else:
        assert len(summary["sources"]) == 4
    assert list(out.glob("*.png")) and list(out.glob("*.csv"))


# ----------------------------------------------------------------------------- memorization

MEM_TINY = ['protocol.dataset="digits"', "sweep.seeds=1", "sweep.levels=[0.0, 0.5]",
            "output.figures=false", "output.progress=false",
            'protocol.fields={hidden = [16, 16], max_steps = 12, first_check = 2, '
            'check_every = 4, val_window = 2, mi_estimator = "binned"}']


def test_memorization_command(tmp_path):
    for mode in ("colored", "shuffled"):
        assert load_config("memorization", CONFIGS / f"memorization_{mode}_mnist.toml")
    out = tmp_path / "mem"
    r = _cli("memorization", CONFIGS / "memorization_shuffled_mnist.toml", "--out", out,
             "--no-compilation-cache", *_sets(MEM_TINY))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    tau = summary["kendall"]["shuffled"]
    assert set(tau) == {"entropy", "mi"} and -1 <= tau["entropy"]["tau"] <= 1
    rows = (out / "memorization.csv").read_text().splitlines()
    assert rows[0].startswith("mode,level,") and len(rows) == 1 + 2 * 3  # 2 levels x 3 rows
    bad = _cli("memorization", CONFIGS / "memorization_shuffled_mnist.toml", "--out",
               tmp_path / "bad", *_sets(['protocol.fields={binnning = "per_neuron"}']))
    assert bad.returncode == 2 and "protocol.fields.binnning" in bad.stderr
    assert not (tmp_path / "bad").exists()
