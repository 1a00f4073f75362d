"""Architectures: shapes, receptive-field radius, multiply-adds, spec parsing, safe weight files."""

import json

import pytest
import torch

from arcnn.architectures import ARCHITECTURES, ConvNet, FastARCNN, build, parse_spec
from arcnn.cards import ModelCard
from arcnn.registry import load_model, load_named, save_model


def test_arcnn_is_the_papers_network():
    m = ConvNet("9-7-1-5")
    shapes = [tuple(layer.weight.shape) for layer in m.layers]
    assert shapes == [(64, 1, 9, 9), (32, 64, 7, 7), (16, 32, 1, 1), (1, 16, 5, 5)]
    assert m.radius == 9
    assert m.macs_per_pixel == 81 * 64 + 49 * 64 * 32 + 32 * 16 + 25 * 16


@pytest.mark.parametrize("spec,radius", [("9-1-5", 6), ("9-1-1-5", 6), ("9-7-3-1-5", 10)])
def test_relatives_radius(spec, radius):
    assert ConvNet(spec).radius == radius


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_output_is_input_minus_twice_radius(name):
    model = ARCHITECTURES[name].build()
    c_in, c_out = getattr(model, "in_channels", 1), getattr(model, "out_channels", 1)
    x = torch.rand(2, c_in, 2 * model.radius + 22, 2 * model.radius + 16)
    assert model(x).shape == (2, c_out, 22, 16)


def test_fast_arcnn_is_much_cheaper():
    assert ConvNet("9-7-1-5").macs_per_pixel / FastARCNN().macs_per_pixel > 6


@pytest.mark.parametrize("bad", ["9-8-5", "9", "a-b", "9--5"])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError):
        parse_spec(bad)


def test_residual_model_starts_near_identity():
    model, _ = load_named("random:9-7-1-5")
    x = torch.rand(1, 1, 40, 40)
    assert torch.allclose(model(x), x[..., 9:31, 9:31], atol=1e-2)


def test_weights_round_trip_without_pickle(tmp_path):
    model = build({"type": "convnet", "spec": "9-1-5", "residual": True})
    save_model(model, tmp_path / "m.safetensors", ModelCard(name="m", steps=3))
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["config"]["spec"] == "9-1-5" and card["steps"] == 3
    assert (tmp_path / "m.safetensors").read_bytes()[:8] != b"\x80\x02\x80\x03"[:8]  # not a pickle
    loaded, _ = load_model(tmp_path / "m.safetensors")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_every_network_keeps_the_typed_contract_and_its_fast_copy_carries_it():
    """The tiler reads radius, stride, channels and multiply-adds from the network (no probing
    with getattr and a default): the trained networks and their fast copies all declare them."""
    from arcnn.acceleration import prepare
    from arcnn.architectures import ChromaNet, FastARCNN, Network

    for net in (ConvNet("9-7-1-5", residual=True), FastARCNN(), ChromaNet()):
        fast = prepare(net, "cpu", "fp32")
        assert isinstance(net, Network) and isinstance(fast, Network)
        for field in ("radius", "stride", "in_channels", "out_channels", "macs_per_pixel", "residual"):
            assert getattr(fast, field) == getattr(net, field), (type(net).__name__, field)
    assert (FastARCNN().stride, ChromaNet().in_channels, ChromaNet().out_channels) == (2, 5, 2)
