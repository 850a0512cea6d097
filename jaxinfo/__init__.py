"""jaxinfo: how much information neural networks take from their data.

Two families of measures, all in nats:

- Smooth unique information (Harutyunyan et al., ICLR 2021) of every training sample, in the
  weights and in the function, on the linearized network (empirical NTK).
- Neuron-diversity measures (Bansal, Pruthi, Belinkov, NeurIPS 2022): activation entropy and
  inter-neuron mutual information.

The public API is flat: everything below is importable as ``jaxinfo.<name>``.
"""
from jaxinfo.data import Dataset, batches, load_digits, load_mnist, select_classes

# --- ntk / linearize (foundation) ---
from jaxinfo.adapters import flax_apply
from jaxinfo.linearize import (KernelDynamics, LinearizedTraining, kernel_dynamics, kernel_matrix,
                               linearize, linearized_training, residual_decay, spectral_gain)
from jaxinfo.ntk import empirical_ntk, ntk_vector_product

# --- sui / groundtruth ---
from jaxinfo.sui import (LOOVectors, LanczosPlan, SGDNoiseInformation, UniqueInformation,
                         lanczos_plan, loo_vectors, sgd_noise_unique_information,
                         unique_information, unique_information_from_kernel, weight_changes)
from jaxinfo.groundtruth import (Correlation, LOOChanges, correlation, linearized_loo,
                                 linearized_loo_kernel, retrain_loo)

# --- diversity / activations ---
from jaxinfo.activations import capture_activations
from jaxinfo.diversity import (DiversitySummary, Ranking, bin_activations, diversity_summary,
                               kendall_tau, neuron_entropy, offdiag_summary,
                               pairwise_mutual_information, rank_models)

__version__ = "0.1.0"
