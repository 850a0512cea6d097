"""The Flax (linen) networks the experiments use — one definition of each.

- :class:`MLP`: ReLU MLP with Xavier-uniform weights (the neuron-diversity experiments,
  :mod:`jaxinfo.train`; also re-exported there).
- :class:`ShallowMLP`: one-hidden-layer ReLU network with Flax default init (the SUI
  ground-truth experiments, :mod:`jaxinfo.experiments.sui`, where it is called ``MLP``).
- :class:`PatchConv` and :class:`SmallCNN`: the small CNN of the SUI ground truth.
- :class:`ResNet`: a ResNet-18-style network for small images (CIFAR-style stem: one 3×3
  stride-1 convolution, no max-pool), widths and depths configurable, BatchNorm (statistics
  frozen at apply time: ``train=False``) or GroupNorm.

Every module maps a batch to ``[batch, outputs]``; image models accept flattened square
images ``[batch, side²·C]`` or ``[batch, H, W, C]``. Inputs are processed per sample when
normalization statistics are frozen (``train=False``) — the property the empirical NTK and
leave-one-out retraining need.

Moving a module here kept its parameter names (Flax names auto-named submodules after their
class, e.g. ``PatchConv_0``), so recorded results and saved parameters still apply.
"""
from __future__ import annotations

import dataclasses

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

__all__ = ["MLP", "ShallowMLP", "PatchConv", "SmallCNN", "Conv", "Layers", "BasicBlock", "ResNetStage",
           "ResNet", "count_params"]


# ----------------------------------------------------------------------------- MLPs

class MLP(nn.Module):
    """ReLU MLP with Xavier-uniform weights and zero biases (the authors' network).

    Attributes:
      hidden: widths of the hidden Dense layers (named ``Dense_0``, ``Dense_1``, ...).
      num_classes: output width (logits layer, the last ``Dense``).

    ``__call__(x)``: ``x`` ``[batch, d]`` (or ``[batch, ...]``, flattened) → logits
    ``[batch, num_classes]``.
    """

    hidden: Sequence[int] = (256, 256, 256)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for h in self.hidden:
            x = nn.relu(nn.Dense(h, kernel_init=nn.initializers.xavier_uniform(),
                                 bias_init=nn.initializers.zeros)(x))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.xavier_uniform(),
                        bias_init=nn.initializers.zeros)(x)


class ShallowMLP(nn.Module):
    """One-hidden-layer ReLU network ``x ↦ W2 relu(W1 x + b1) + b2`` (Flax default init)."""

    width: int = 1024
    outputs: int = 1

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.outputs)(nn.relu(nn.Dense(self.width)(x)))


# ----------------------------------------------------------------------------- small CNN

class PatchConv(nn.Module):
    """3×3 convolution written as patches @ kernel (im2col), stride ``strides``, SAME padding.

    Mathematically an ordinary convolution (kernel ``[9·C_in, C_out]``, LeCun-normal init, zero
    bias); written with ``lax.conv_general_dilated_patches`` and a matmul because vmapping
    ``lax.conv`` over per-model weights (retraining many models at once) turns into grouped
    convolutions that are very slow on CPU, while a batched matmul is fast.
    """

    features: int
    strides: int = 2

    @nn.compact
    def __call__(self, x):
        cin = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (9 * cin, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        patches = jax.lax.conv_general_dilated_patches(
            x, (3, 3), (self.strides, self.strides), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))  # [n, h', w', C_in·9]
        return patches @ kernel + bias


class SmallCNN(nn.Module):
    """Two 3×3 stride-2 ReLU convolutions and a linear read-out, on flattened square images."""

    side: int
    channels: tuple[int, int] = (16, 32)
    outputs: int = 1

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], self.side, self.side, 1)
        for c in self.channels:
            x = nn.relu(PatchConv(c)(x))
        return nn.Dense(self.outputs)(x.reshape(x.shape[0], -1))


# ----------------------------------------------------------------------------- ResNet

class Conv(nn.Module):
    """``k×k`` convolution without bias, kernel ``[k, k, C_in, C_out]`` (HWIO, LeCun normal).

    Symmetric zero padding ``(k − 1)/2`` (PyTorch / CIFAR-ResNet convention: a 14×14 input
    with stride 2 gives 7×7). ``impl="patches"`` computes it as im2col patches @ kernel (fast
    when vmapped over per-model weights on CPU, see :class:`PatchConv`); ``impl="lax"`` calls
    ``lax.conv_general_dilated`` (fast for one model). Both give the same function of the
    same parameter. The kernel is drawn in ``param_dtype`` (float32, as Flax's layers), so the
    initialization does not depend on whether float64 is enabled.
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    impl: str = "patches"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        k, cin = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, cin, self.features), self.param_dtype)
        kernel = kernel.astype(x.dtype)
        pad = ((k - 1) // 2, (k - 1) // 2)
        s = (self.strides, self.strides)
        if self.impl == "lax":
            return jax.lax.conv_general_dilated(x, kernel, s, (pad, pad),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.impl != "patches":
            raise ValueError(f"Conv.impl must be 'patches' or 'lax', got {self.impl!r}")
        patches = jax.lax.conv_general_dilated_patches(
            x, (k, k), s, (pad, pad), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        # patch features are ordered (C_in, kh, kw), C_in slowest
        w = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin * k * k, self.features)
        return patches @ w


@dataclasses.dataclass(frozen=True)
class Layers:
    """How every convolution and normalisation of a :class:`ResNet` is built.

    Attributes:
      norm: ``"batch"`` (BatchNorm; ``train=False`` uses the stored ``batch_stats``, so
        fine-tuning with :func:`jaxinfo.flax_apply` holds them fixed) or ``"group"``
        (GroupNorm with ``gcd(groups, C)`` groups: no statistics to freeze).
      bn_momentum: running-average momentum of BatchNorm in training mode (``0.0`` sets the
        statistics to the current batch's: see :func:`jaxinfo.finetune.calibrate_batch_stats`).
      groups: GroupNorm groups.
      conv_impl: ``"patches"`` (im2col @ kernel: fast when retraining many vmapped models on
        CPU) or ``"lax"`` (``lax.conv``: fast for pretraining one model). Same parameters.
    """

    norm: str = "batch"
    bn_momentum: float = 0.9
    groups: int = 4
    conv_impl: str = "patches"

    def norm_layer(self, name: str, train: bool):
        """The normalisation layer ``name`` (BatchNorm frozen unless ``train``)."""
        if self.norm == "batch":
            return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                epsilon=1e-5, name=name)
        if self.norm == "group":
            return lambda x: nn.GroupNorm(num_groups=math.gcd(self.groups, x.shape[-1]),
                                          epsilon=1e-5, name=name)(x)
        raise ValueError(f"norm must be 'batch' or 'group', got {self.norm!r}")

    def conv(self, features: int, size: int, strides: int, name: str) -> "Conv":
        return Conv(features, size, strides, self.conv_impl, name=name)


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity, or a 1×1 convolution + norm (``proj_conv``, ``proj_norm``)
    when the stride or the width changes.
    """

    features: int
    strides: int = 1
    layers: Layers = Layers()

    @nn.compact
    def __call__(self, x, train: bool = False):
        lay = self.layers
        h = lay.conv(self.features, 3, self.strides, "conv1")(x)
        h = nn.relu(lay.norm_layer("norm1", train)(h))
        h = lay.conv(self.features, 3, 1, "conv2")(h)
        h = lay.norm_layer("norm2", train)(h)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = lay.conv(self.features, 1, self.strides, "proj_conv")(x)
            x = lay.norm_layer("proj_norm", train)(x)
        return nn.relu(h + x)


class ResNetStage(nn.Module):
    """``blocks`` basic blocks (``block0``, ``block1``, ...); the first one has ``strides``."""

    features: int
    blocks: int
    strides: int
    layers: Layers = Layers()

    @nn.compact
    def __call__(self, x, train: bool = False):
        for b in range(self.blocks):
            x = BasicBlock(self.features, self.strides if b == 0 else 1, self.layers,
                           name=f"block{b}")(x, train)
        return x


class ResNet(nn.Module):
    """ResNet-18-style network for small images (CIFAR-style stem).

    ``stem_conv`` (3×3, stride 1, width ``stage_widths[0]``) → ``stem_norm`` → ReLU → stages
    ``stage0 … stage{S−1}`` (``blocks[s]`` basic blocks of width ``stage_widths[s]``; stride 2
    at the start of every stage but the first) → global average pooling → ``head`` (Dense,
    ``num_outputs``). ResNet-18 is ``blocks=(2, 2, 2, 2)`` with widths ``(64, 128, 256, 512)``;
    the defaults are 8× narrower. A 14×14 input gives feature maps 14, 7, 4, 2.

    Attributes:
      stage_widths: channels per stage.
      blocks: basic blocks per stage (same length as ``stage_widths``).
      num_outputs: output width.
      in_channels: channels of flattened inputs (``[batch, side²·C]`` is reshaped to
        ``[batch, side, side, C]``).
      layers: :class:`Layers` — normalisation (BatchNorm frozen at apply time, or GroupNorm)
        and convolution implementation.

    ``__call__(x, train=False, return_features=False)``: ``x`` ``[batch, H, W, C]`` or
    flattened → ``[batch, num_outputs]``, or the pooled features ``[batch, stage_widths[-1]]``
    the head reads when ``return_features`` (the head is then not applied, nor created).
    """

    stage_widths: Sequence[int] = (8, 16, 32, 64)
    blocks: Sequence[int] = (2, 2, 2, 2)
    num_outputs: int = 10
    in_channels: int = 1
    layers: Layers = Layers()

    @nn.compact
    def __call__(self, x, train: bool = False, return_features: bool = False):
        if len(self.stage_widths) != len(self.blocks):
            raise ValueError(f"stage_widths {tuple(self.stage_widths)} and blocks "
                             f"{tuple(self.blocks)} must have the same length")
        if x.ndim == 2:
            side = math.isqrt(x.shape[1] // self.in_channels)
            if side * side * self.in_channels != x.shape[1]:
                raise ValueError(f"flattened inputs of {x.shape[1]} features are not square "
                                 f"images with {self.in_channels} channel(s)")
            x = x.reshape(x.shape[0], side, side, self.in_channels)
        x = self.layers.conv(self.stage_widths[0], 3, 1, "stem_conv")(x)
        x = nn.relu(self.layers.norm_layer("stem_norm", train)(x))
        for s, (w, b) in enumerate(zip(self.stage_widths, self.blocks)):
            x = ResNetStage(w, b, 1 if s == 0 else 2, self.layers, name=f"stage{s}")(x, train)
        feats = jnp.mean(x, axis=(1, 2))
        if return_features:
            return feats
        return nn.Dense(self.num_outputs, name="head")(feats)


def count_params(tree) -> int:
    """Number of scalar entries in a pytree of arrays."""
    return sum(int(math.prod(jnp.shape(a))) for a in jax.tree_util.tree_leaves(tree))
