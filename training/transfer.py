"""Initialisation and easy-hard transfer: copying layers of a trained base into a new model.

A transfer is declared in a training config's ``[transfer]`` table::

    base = "jpeg-q20"      # bundled name or path to a .safetensors file
    layers = [0, 1]        # indices of the conv layers to copy (0 = feature extraction)
    freeze = false         # frozen layers keep the base's weights; otherwise they are fine-tuned
    into = [0, 1, 2, 4]    # optional: the target index of each copied layer (default: the same)
    identity = [3]         # optional: target layers that start as the identity

Layers not copied are initialised by the config's ``init`` ("gaussian" with ``init_std``, as the
paper, or "he").

``into`` and ``identity`` make a deeper net that starts as *exactly* the base's function (the
paper's "shallow to deep" transfer, but losing nothing at step 0): a copied kernel smaller than
its target (allowed only where ``into`` maps it explicitly) sits at the target's centre with zero
taps around it, and an identity layer (square channels, centre tap 1) passes its non-negative ReLU
input through unchanged. So the four-layer 9-7-1-5 goes into the paper's five-layer 9-7-3-1-5
(1x1 mapping into the 3x3 layer's centre, a new 1x1 identity) and training starts from the base's
PSNR instead of from scratch.

The same explicit ``into`` also makes a *wider* net that starts as the base's function: a copied
layer fills the first output and input channels of a target with more of either. The base's
output channels read nothing from the new input channels (zero weights), and the new output
channels keep their initialisation, so they compute something, but every copied layer after
them reads them with zero weights: the output is unchanged at step 0, and the gradient reaches
those zero weights first (the new channels are alive), then the new channels themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from arcnn.registry import load_named


def conv_layers(model: nn.Module) -> list[nn.Module]:
    """The model's convolution / deconvolution layers in forward order."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def initialise(model: nn.Module, init: str, std: float = 1e-3) -> None:
    """Gaussian (paper: std 0.001, zero bias) or He (Kaiming normal, fan-in) initialisation.

    With He initialisation the last layer still starts near zero so that a residual model begins
    as the identity (the JPEG input), not as noise added to it.
    """
    layers = conv_layers(model)
    for i, layer in enumerate(layers):
        if init == "gaussian" or (init == "he" and i == len(layers) - 1):
            nn.init.normal_(layer.weight, std=std)
        elif init == "he":
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        else:
            raise ValueError(f"unknown init {init!r}: use 'gaussian' or 'he'")
        nn.init.zeros_(layer.bias)


def _embed(weight: torch.Tensor, target: torch.Tensor, grow: bool) -> torch.Tensor:
    """``weight`` (out, in, k, k) in the first channels and at the centre of ``target``'s kernel.

    Unless ``grow``, the shapes must match exactly. Growing, the copied outputs get zero taps
    around the kernel and zero weights from the extra input channels (so they compute exactly
    what the base did), and extra output channels keep ``target``'s initial weights.
    """
    (o, i, *k), (big_o, big_i, *big_k) = weight.shape, target.shape
    fits = o <= big_o and i <= big_i and all(a <= b and (b - a) % 2 == 0 for a, b in zip(k, big_k))
    if not (fits if grow else weight.shape == target.shape):
        raise ValueError(f"base {tuple(weight.shape)} does not fit target {tuple(target.shape)}")
    out = target.detach().clone()
    out[:o].zero_()
    dy, dx = (big_k[0] - k[0]) // 2, (big_k[1] - k[1]) // 2
    out[:o, :i, dy:dy + k[0], dx:dx + k[1]] = weight
    return out


def _set_identity(layer: nn.Module) -> None:
    out_c, in_c, kh, kw = layer.weight.shape
    if out_c != in_c or isinstance(layer, nn.ConvTranspose2d):
        raise ValueError(f"an identity layer needs square channels, got {tuple(layer.weight.shape)}")
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[range(out_c), range(in_c), kh // 2, kw // 2] = 1.0
        layer.bias.zero_()


def apply_transfer(model: nn.Module, transfer: dict) -> list[int]:
    """Copy the listed layers from the base model (into their ``into`` positions, centred), set the
    ``identity`` layers, and freeze the copies if asked. Returns the copied base indices."""
    base, _ = load_named(str(transfer["base"]))
    source, target = conv_layers(base), conv_layers(model)
    indices = list(transfer.get("layers", []))
    into = list(transfer.get("into", indices))  # an explicit map may also grow kernels
    if len(into) != len(indices):
        raise ValueError(f"transfer.into {into} must name one target layer per copied layer {indices}")
    freeze = transfer.get("freeze", False)
    for i, j in zip(indices, into):
        if freeze and source[i].weight.shape != target[j].weight.shape:
            # Freezing a grown layer would also freeze its new channels and taps at their
            # initial values (zeros for the read weights), so they could never learn.
            raise ValueError(f"layer {i} -> {j}: freeze cannot be combined with growing "
                             f"{tuple(source[i].weight.shape)} into {tuple(target[j].weight.shape)}")
        try:
            weight = _embed(source[i].weight.data, target[j].weight.data, "into" in transfer)
        except ValueError as exc:
            raise ValueError(f"layer {i} -> {j}: {exc}") from None
        target[j].weight.data.copy_(weight)
        target[j].bias.data[:len(source[i].bias)] = source[i].bias.data
        if freeze:
            target[j].weight.requires_grad_(False)
            target[j].bias.requires_grad_(False)
    for j in transfer.get("identity", []):
        _set_identity(target[j])
    return indices
