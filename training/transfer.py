"""Initialisation and easy-hard transfer: copying layers of a trained base into a new model.

A transfer is declared in a training config's ``[transfer]`` table::

    base = "jpeg-q20"      # bundled name or path to a .safetensors file
    layers = [0, 1]        # indices of the conv layers to copy (0 = feature extraction)
    freeze = false         # frozen layers keep the base's weights; otherwise they are fine-tuned

Layers not copied are initialised by the config's ``init`` ("gaussian" with ``init_std``, as the
paper, or "he").
"""

from __future__ import annotations

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


def apply_transfer(model: nn.Module, transfer: dict) -> list[int]:
    """Copy the listed layers from the base model; freeze them if asked. Returns copied indices."""
    base, _ = load_named(str(transfer["base"]))
    source, target = conv_layers(base), conv_layers(model)
    indices = list(transfer.get("layers", []))
    for i in indices:
        if source[i].weight.shape != target[i].weight.shape:
            raise ValueError(f"layer {i}: base {tuple(source[i].weight.shape)} does not fit "
                             f"target {tuple(target[i].weight.shape)}")
        target[i].weight.data.copy_(source[i].weight.data)
        target[i].bias.data.copy_(source[i].bias.data)
        if transfer.get("freeze", False):
            target[i].weight.requires_grad_(False)
            target[i].bias.requires_grad_(False)
    return indices
