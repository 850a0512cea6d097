#!/usr/bin/env bash
# The issue-12 background queue on the bundled MNIST (each step resumable: rerun this script
# after any interruption). Wall time of each step goes to memorization_runs/queue.log.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=benchmarks/memorization_runs
step() { local t0=$SECONDS; echo "[$(date -u +%FT%TZ)] start: $1" >> $R/queue.log; shift
         "$@"; echo "[$(date -u +%FT%TZ)] done in $((SECONDS - t0)) s" >> $R/queue.log; }
ABL=(benchmarks/memorization_ablation.py --base $R/authors_epochs_mnist_s10 --seeds 10
     --protocol authors-epochs --dataset mnist --mi binned --out $R)
step "authors-epochs, bundled MNIST, 10 seeds" $PY benchmarks/run_memorization.py \
    --protocol authors-epochs --dataset mnist --seeds 10 --mi binned --out $R/authors_epochs_mnist_s10
step "entropy and binned-MI ablations" $PY "${ABL[@]}" \
    --only "MI: binned (100 bins);binning: per layer;binning: per neuron;bin assignment: histogram"
step "data size: Fashion-MNIST, 4,000 training images, 10 seeds" $PY benchmarks/run_memorization.py \
    --protocol authors-epochs --dataset fashion_mnist --n-train 4000 --seeds 10 --mi binned \
    --out $R/authors_epochs_fashion4000_s10
step "the authors' protocol (KSG)" $PY "${ABL[@]}" --only "authors' protocol"
step "the final checkpoint (KSG)" $PY "${ABL[@]}" --only "checkpoint: final"
step "all ablations" $PY "${ABL[@]}" \
    --train-run "schedule: steps (1 seed)=$R/authors_steps_mnist_s1" \
    --train-run "data: Fashion-MNIST 4,000=$R/authors_epochs_fashion4000_s10" \
    --train-run "data: Fashion-MNIST 50,000 (1 seed)=$R/authors_fashion_s1"
