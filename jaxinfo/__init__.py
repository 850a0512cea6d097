"""jaxinfo: how much information neural networks take from their data.

Two families of measures, all in nats:

- Smooth unique information (Harutyunyan et al., ICLR 2021) of every training sample, in the
  weights and in the function, on the linearized network (empirical NTK).
- Neuron-diversity measures (Bansal, Pruthi, Belinkov, NeurIPS 2022): activation entropy and
  inter-neuron mutual information.

The public API is flat: every name in ``__all__`` is importable as ``jaxinfo.<name>`` and is
listed in the README. Submodules (``jaxinfo.data``, ``jaxinfo.checkpoint``, ``jaxinfo.sui``, ...)
hold the rest. The mathematics is in ``docs/``.
"""
from jaxinfo.compilation import enable_compilation_cache
from jaxinfo.dynamics import GradientDescent

# --- data ---
from jaxinfo.data import (Dataset, batches, colored, load_digits, load_idx, load_mnist,
                          load_tfds, select_classes, shuffled, split)

# --- ntk / linearize (foundation) ---
from jaxinfo.adapters import flax_apply
from jaxinfo.linearize import (KernelDynamics, LinearizedTraining, kernel_dynamics, kernel_matrix,
                               linearize, linearized_training, residual_decay, spectral_gain)
from jaxinfo.ntk import empirical_ntk, empirical_ntk_fn, ntk_vector_product

# --- sui / groundtruth ---
from jaxinfo.sui import (LOOSolver, LOOVectors, LanczosPlan, SGDNoiseInformation,
                         UniqueInformation, lanczos_plan, loo_vectors,
                         sgd_noise_unique_information, unique_information,
                         unique_information_core, unique_information_from_kernel, weight_changes)
from jaxinfo.groundtruth import (Correlation, LOOChanges, correlation, linearized_loo,
                                 linearized_loo_kernel, retrain_loo)

# --- diversity / activations ---
from jaxinfo.activations import capture_activations
from jaxinfo.diversity import (DiversitySummary, Ranking, bin_activations, diversity_summary,
                               kendall_tau, neuron_entropy, offdiag_summary,
                               pairwise_mutual_information, rank_models)

__version__ = "0.2.0"

__all__ = [
    # dynamics, compilation
    "GradientDescent", "enable_compilation_cache",
    # data
    "Dataset", "batches", "colored", "load_digits", "load_idx", "load_mnist", "load_tfds",
    "select_classes", "shuffled", "split",
    # ntk / linearize
    "empirical_ntk", "empirical_ntk_fn", "ntk_vector_product", "flax_apply", "linearize",
    "linearized_training", "LinearizedTraining", "kernel_dynamics", "KernelDynamics",
    "residual_decay", "spectral_gain", "kernel_matrix",
    # smooth unique information
    "unique_information", "unique_information_from_kernel", "unique_information_core",
    "loo_vectors", "weight_changes", "lanczos_plan", "sgd_noise_unique_information",
    "UniqueInformation", "LOOVectors", "LanczosPlan", "LOOSolver", "SGDNoiseInformation",
    # ground truth
    "linearized_loo", "linearized_loo_kernel", "retrain_loo", "LOOChanges", "correlation",
    "Correlation",
    # neuron diversity
    "capture_activations", "neuron_entropy", "pairwise_mutual_information", "bin_activations",
    "diversity_summary", "offdiag_summary", "rank_models", "kendall_tau", "DiversitySummary",
    "Ranking",
]
