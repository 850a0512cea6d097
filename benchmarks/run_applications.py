"""The SUI paper's applications on bundled MNIST 4 vs 9, through the command line.

Runs the shipped configurations (``configs/*_mnist.toml``) with ``jaxinfo COMMAND`` into
``benchmarks/applications_runs/<name>/`` (resumable: rerunning skips finished work), copies the
figures to ``benchmarks/figures/applications/`` and writes ``benchmarks/RESULTS_applications.md``
with the tables, the commands that made them and the figures.

    .venv/bin/python benchmarks/run_applications.py            # everything (~20-40 min, 2 cores)
    .venv/bin/python benchmarks/run_applications.py --only detect_label_noise detect_fgsm
    .venv/bin/python benchmarks/run_applications.py --report   # rewrite the report only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "applications_runs"
FIGS = ROOT / "benchmarks" / "figures" / "applications"
REPORT = ROOT / "benchmarks" / "RESULTS_applications.md"

#: name -> (command, config, extra --set overrides, figure files)
JOBS = {
    "detect_label_noise": ("detect", "configs/detect_mnist.toml", [], ["detection_roc.png"]),
    "detect_fgsm": ("detect", "configs/detect_mnist.toml",
                    ["corruption.kind=fgsm", "corruption.eps=0.1", "detect.times=[1000]"],
                    ["detection_roc.png"]),
    "detect_pgd": ("detect", "configs/detect_mnist.toml",
                   ["corruption.kind=pgd", "corruption.eps=0.1", "corruption.steps=10",
                    "detect.times=[1000]"], ["detection_roc.png"]),
    "subpopulations": ("subpopulations", "configs/subpopulations_mnist.toml", [],
                       ["subpopulations.png"]),
    "sources": ("sources", "configs/sources_mnist.toml", [], ["sources.png"]),
    "summarize": ("summarize", "configs/summarize_mnist.toml", [], ["summarization.png"]),
    "sui": ("sui", "configs/sui_mnist.toml", [], ["sui_most_least.png", "sui_by_label.png"]),
}


def command_line(name: str) -> str:
    cmd, cfg, sets, _ = JOBS[name]
    extra = "".join(f" --set '{s}'" for s in sets)
    return f"jaxinfo {cmd} {cfg} --out benchmarks/applications_runs/{name}{extra}"


def run(name: str, force: bool = False) -> float:
    cmd, cfg, sets, figs = JOBS[name]
    args = [sys.executable, "-m", "jaxinfo.cli", cmd, cfg, "--out", str(RUNS / name)]
    args += ["--force"] if force else []
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(args, cwd=ROOT, env=env, check=True)
    secs = time.perf_counter() - t0
    FIGS.mkdir(parents=True, exist_ok=True)
    for f in figs:
        if (RUNS / name / f).exists():
            shutil.copy(RUNS / name / f, FIGS / f"{name}_{f}")
    return secs


def _load(name):
    p = RUNS / name / "summary.json"
    return json.loads(p.read_text()) if p.exists() else None


def _f(v, d=3):
    return "–" if v is None else f"{v:.{d}f}"


def _detect_table(names) -> list[str]:
    lines = ["| corruption | t | score | AUROC | average precision |", "|---|---|---|---|---|"]
    for name in names:
        s = _load(name)
        if s is None:
            continue
        for t, v in s["by_t"].items():
            for score in ("weight_si", "functional_si", "loss", "random"):
                lines.append(f"| {s['corruption']} ({s['n_corrupted']}/{s['n']}) | {t} | "
                             f"{score} | {_f(v['auroc'][score])} | "
                             f"{_f(v['average_precision'][score])} |")
    return lines


def report(timings: dict) -> str:
    out = ["# Applications of smooth unique information (bundled MNIST 4 vs 9)", "",
           "Made by `benchmarks/run_applications.py` through the command line (`jaxinfo "
           "COMMAND CONFIG --out DIR`), on "
           f"{platform.machine()} with {os.cpu_count()} CPU cores (shared), "
           f"{time.strftime('%Y-%m-%d')}. Each section lists the command; the configuration "
           "files are in `configs/`, the raw tables (CSV) and `summary.json` in "
           "`benchmarks/applications_runs/<name>/` (not committed: rerun to get them). SI is in "
           "nats; the network is linearized at its initialization and trained by full-batch GD "
           "on the averaged MSE (0/1 targets, one output).", ""]

    out += ["## Corrupted-sample detection (label noise)", "",
            f"`{command_line('detect_label_noise')}`", "",
            "500 training images, 10 % of the labels flipped, MLP-1024, lr 0.04, reference set "
            "X* = 500 held-out images. Scores: weight SI, functional SI, the training loss "
            "½‖f_t(x_i) − y_i‖² under the same linearized run at the same t, and uniform random "
            "numbers (one draw). Chance: AUROC 0.5, average precision 0.1.", ""]
    out += _detect_table(["detect_label_noise"])
    out += ["", "![ROC curves](figures/applications/detect_label_noise_detection_roc.png)", ""]

    out += ["## Adversarial training samples (FGSM, PGD)", "",
            f"`{command_line('detect_fgsm')}`", "", f"`{command_line('detect_pgd')}`", "",
            "The real network is trained on the clean 500 images (1000 GD steps); 10 % of them "
            "are replaced by L∞ perturbations (ε = 0.1 in pixel units, MSE loss, labels kept) "
            "against it; the perturbed training set is then scored at t = 1000.", ""]
    out += _detect_table(["detect_fgsm", "detect_pgd"])
    for name in ("detect_fgsm", "detect_pgd"):
        s = _load(name)
        if s is not None and "attack_loss_clean" in s:
            out.append(f"\n{name}: the attacked model's loss on the attacked samples went from "
                       f"{s['attack_loss_clean']:.4f} to {s['attack_loss_adversarial']:.4f}.")
    out += ["", "![FGSM](figures/applications/detect_fgsm_detection_roc.png)",
            "![PGD](figures/applications/detect_pgd_detection_roc.png)", ""]

    out += ["## Under-sampled classes", "", f"`{command_line('subpopulations')}`", "",
            "The 9s (class 1) are subsampled to the given fraction of their number; mean SI per "
            "class (nats).", ""]
    s = _load("subpopulations")
    if s is not None:
        out += ["| fraction of 9s kept | " + " | ".join(
            f"mean functional SI, class {c}" for c in s["mean_functional_si"]) + " | " +
            " | ".join(f"mean weight SI, class {c}" for c in s["mean_weight_si"]) + " |",
            "|---|" + "---|" * (2 * len(s["mean_functional_si"]))]
        for j, f in enumerate(s["fractions"]):
            out.append(f"| {f:g} | " + " | ".join(f"{v[j]:.3g}" for v in
                                                   s["mean_functional_si"].values()) + " | " +
                       " | ".join(f"{v[j]:.3g}" for v in s["mean_weight_si"].values()) + " |")
    out += ["", "![subpopulations](figures/applications/subpopulations_subpopulations.png)", ""]

    out += ["## Data sources", "", f"`{command_line('sources')}`", "",
            "Four sources of 150 images each, mixed into one training set; X* = the other "
            "training samples.", ""]
    s = _load("sources")
    if s is not None:
        out += ["| source | n | median functional SI | mean functional SI | median weight SI | "
                "share of total functional SI |", "|---|---|---|---|---|---|"]
        for name, v in s["sources"].items():
            out.append(f"| {name} | {v['n']} | {v['median_functional_si']:.3g} | "
                       f"{v['mean_functional_si']:.3g} | {v['median_weight_si']:.3g} | "
                       f"{v['share_functional_si']:.2f} |")
        out.append(f"\nRanking by median functional SI: "
                   f"{' > '.join(s['ranking_by_median_functional_si'])}.")
    out += ["", "![sources](figures/applications/sources_sources.png)", ""]

    out += ["## Dataset summarization", "", f"`{command_line('summarize')}`", "",
            "Samples removed by functional SI of the full training set (least / most "
            "informative first), by functional SI recomputed on what is kept at every 10 %, or "
            "at random (5 seeds; min–max band). The real MLP (width 256) is retrained from the "
            "same initialization for 300 full-batch GD steps on what is kept; accuracy on the "
            "500 held-out images.", ""]
    s = _load("summarize")
    if s is not None:
        strategies = [k for k, v in s.items() if isinstance(v, dict) and "mean_accuracy" in v]
        fr = s[strategies[0]]["fractions"]
        out += ["| removed | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
        for j, f in enumerate(fr):
            cells = []
            for k in strategies:
                v = s[k]
                cells.append(f"{v['mean_accuracy'][j]:.3f}" if k != "random" else
                             f"{v['mean_accuracy'][j]:.3f} [{v['min_accuracy'][j]:.3f}, "
                             f"{v['max_accuracy'][j]:.3f}]")
            out.append(f"| {f:.0%} | " + " | ".join(cells) + " |")
    out += ["", "![summarization](figures/applications/summarize_summarization.png)", ""]

    out += ["## Scores of a dataset (`jaxinfo sui`)", "", f"`{command_line('sui')}`", ""]
    s = _load("sui")
    if s is not None:
        out.append(f"{s['n']} samples, method {s['method']}, {s['seconds']:.0f} s for the "
                   f"scores; functional SI median {s['functional_si']['median']:.3g}, max "
                   f"{s['functional_si']['max']:.3g} nats.")
    out += ["", "![most/least](figures/applications/sui_sui_most_least.png)", ""]
    if timings:
        out += ["## Wall-clock times of this run", "", "| job | seconds |", "|---|---|"]
        out += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=list(JOBS), help="run only these jobs")
    ap.add_argument("--report", action="store_true", help="rewrite the report only")
    ap.add_argument("--force", action="store_true", help="recompute (jaxinfo ... --force)")
    args = ap.parse_args()
    timings = {}
    if not args.report:
        for name in args.only or list(JOBS):
            print(f"== {name}: {command_line(name)}", flush=True)
            timings[name] = run(name, args.force)
    REPORT.write_text(report(timings))
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
