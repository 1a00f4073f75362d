"""The fast paths compute the same thing: prepared models, parallel CPU tiles, CUDA pipeline, bench.

Exactness is the contract of tiling (tests/test_tiling.py); here the prepared (channels-last,
sub-pixel, reduced-precision) models are held to it too, float32 fast paths to the original
model within float rounding, and reduced precision to float32 within a small PSNR budget.
CUDA tests run only where a CUDA device is present.
"""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from arcnn.acceleration import CudaGraphed, WideHead, cpu_has_bf16, prepare, subpixel_from_deconv
from arcnn.architectures import ARCHITECTURES
from arcnn.colour import to_uint8
from arcnn.metrics import psnr
from arcnn.registry import load_named
from arcnn.tiling import restore_plane, restore_planes, restore_whole

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
LUMA = [n for n, a in ARCHITECTURES.items() if a.config["type"] != "chroma"]  # chroma: test_chroma.py


def _model(name: str, residual: bool) -> nn.Module:
    torch.manual_seed(1)
    model = ARCHITECTURES[name].build().eval()
    model.residual = residual
    return model


def _plane(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth image with noise: like a photo enough that PSNR comparisons mean something."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    smooth = 128 + 80 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    return np.clip(smooth + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)


def test_subpixel_head_equals_deconvolution():
    deconv = _model("fast-arcnn", False).deconv
    conv = subpixel_from_deconv(deconv)
    x = torch.rand(2, 64, 13, 11)
    with torch.no_grad():
        ref = deconv(x)[..., 8:8 + 2 * (13 - 4), 8:8 + 2 * (11 - 4)]
        out = torch.nn.functional.pixel_shuffle(conv(x), 2)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("name", LUMA)
@pytest.mark.parametrize("residual", [False, True])
def test_fp32_fast_path_matches_model(name, residual):
    """Same maths, other kernels: only summation order differs."""
    model = _model(name, residual)
    fast = prepare(model, "cpu", "fp32")
    x = torch.rand(2, 1, 61, 47)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    assert out.shape == ref.shape
    scale = max(1.0, ref.abs().max().item())
    assert (out - ref).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("name", LUMA)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_path_tiles_equal_its_whole_image(name, precision):
    """Tiling stays exact for prepared models with parallel CPU workers: to float rounding in
    fp32; in bf16 to within a twentieth of a grey level, because on AMX CPUs oneDNN picks its
    kernel by tensor shape and another summation order can round a hidden activation to the
    neighbouring bf16 value (measured with these random weights: 0.02 grey levels at most)."""
    fast = prepare(_model(name, True), "cpu", precision)
    plane = _plane((75, 58), seed=3)
    whole = restore_whole(fast, plane)
    for tile in (16, 33):
        tiled = restore_plane(fast, plane, tile=tile, batch_size=2, workers=2)
        assert np.isfinite(tiled).all(), (name, precision, tile)
        if precision == "fp32":
            scale = max(1.0, np.abs(whole).max() / 255.0)
            assert np.abs(tiled - whole).max() / 255.0 <= 1e-5 * scale, (name, precision, tile)
            assert np.array_equal(to_uint8(tiled), to_uint8(whole))
        else:
            assert np.abs(tiled - whole).max() <= 0.05, (name, precision, tile)
            assert np.abs(to_uint8(tiled).astype(int) - to_uint8(whole)).max() <= 1


def test_parallel_workers_give_identical_output():
    fast = prepare(_model("arcnn", True), "cpu", "fp32")
    plane = _plane((300, 280))
    one = restore_plane(fast, plane, tile=128, workers=1)
    two = restore_plane(fast, plane, tile=128, workers=2)
    assert np.array_equal(one, two)


def test_small_images_are_split_for_the_workers():
    """A 300 x 300 image with tile 512 still keeps two workers busy (tiles halve to 128)."""
    model = _model("arcnn", True)
    shapes = []
    hook = model.layers[0].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    restore_plane(model, _plane((300, 300)), tile=512, batch_size=1, workers=2)
    hook.remove()
    assert len(shapes) >= 4


def test_planes_batch_across_images():
    model = prepare(_model("srcnn", True), "cpu", "fp32")
    planes = [_plane((70, 90), 1), _plane((70, 90), 2), _plane((41, 33), 3)]
    together = restore_planes(model, planes, tile=32, batch_size=5)
    for plane, out in zip(planes, together):
        assert np.array_equal(out, restore_plane(model, plane, tile=32, batch_size=5))


@pytest.mark.parametrize("name", ["arcnn", "fast-arcnn"])
def test_bf16_close_to_fp32(name):
    """bf16 costs far less than the 0.01 dB budget on a photo-like image (random:... weights)."""
    model, _ = load_named(f"random:{name}")
    plane = _plane((96, 96), seed=5)
    ref = to_uint8(restore_plane(prepare(model, "cpu", "fp32"), plane, tile=64))
    low = to_uint8(restore_plane(prepare(model, "cpu", "bf16"), plane, tile=64))
    assert np.abs(ref.astype(int) - low.astype(int)).max() <= 1
    assert psnr(ref, low) > 50.0


def test_cpu_rejects_fp16():
    with pytest.raises(ValueError):
        prepare(_model("arcnn", False), "cpu", "fp16")


def test_cpu_bf16_detection_reads_cpuinfo():
    assert isinstance(cpu_has_bf16(), bool)


@cuda
@pytest.mark.parametrize("name", ["arcnn", "fast-arcnn"])
def test_cuda_fp32_pipeline_matches_cpu(name):
    model = _model(name, True)
    plane = _plane((150, 203), seed=7)
    ref = restore_plane(prepare(model, "cpu", "fp32"), plane, tile=64)
    with torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=False):
        out = restore_plane(prepare(model, "cuda", "fp32"), plane, tile=64, batch_size=3, device="cuda")
    assert np.abs(out - ref).max() <= 1e-3


@cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_reduced_precision_close_to_fp32(precision):
    model, _ = load_named("random:arcnn")
    plane = _plane((256, 320), seed=8)
    ref = to_uint8(restore_plane(prepare(model, "cuda", "fp32"), plane, tile=128, device="cuda"))
    low = to_uint8(restore_plane(prepare(model, "cuda", precision), plane, tile=128, device="cuda"))
    assert psnr(ref, low) > 50.0


@cuda
def test_cuda_graphs_match_eager():
    fast = prepare(load_named("random:arcnn")[0], "cuda", "fp16")
    plane = _plane((200, 260), seed=9)
    eager = restore_plane(fast, plane, tile=64, batch_size=4, device="cuda")
    graphed = restore_plane(CudaGraphed(fast), plane, tile=64, batch_size=4, device="cuda")
    assert np.array_equal(eager, graphed)


@pytest.mark.parametrize("script", ["floor", "per_core", "model_throughput", "side_by_side", "cli_throughput",
                                    "peak_memory", "gpu", "precision_cost", "product_memory", "auto_precision",
                                    "fast_tier", "precision_all"])
@pytest.mark.bench
def test_bench_scripts_run_quick(script, tmp_path, monkeypatch):
    """Every benchmark runs end to end in --quick mode and writes its JSON (in this process:
    the benchmarks that need a fresh process, CLI and peak memory, start their own)."""
    out = tmp_path / f"{script}.json"
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(sys, "argv", [script, "--quick", "--json", str(out)])
    runpy.run_module(f"bench.{script}", run_name="__main__")
    result = json.loads(out.read_text())
    assert result["benchmark"] == script and "machine" in result


def test_auto_precision_is_bf16_only_where_bf16_runs_fast():
    from arcnn.acceleration import cpu_has_amx, cpu_has_bf16, cpu_runs_bf16_fast

    def cpu(vendor: str, flags: str) -> str:
        return f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu avx512f {flags}\nbugs\t\t: amx_bf16_is_not_a_flag\n"

    intel_amx = cpu("GenuineIntel", "avx512_bf16 amx_bf16 amx_tile amx_int8")
    intel_bf16 = cpu("GenuineIntel", "avx512_bf16")
    amd_bf16 = cpu("AuthenticAMD", "avx512_bf16")
    amd_avx2 = cpu("AuthenticAMD", "avx2")
    assert cpu_has_amx(intel_amx) and not cpu_has_amx(intel_bf16) and not cpu_has_amx("")
    assert cpu_has_bf16(intel_bf16) and cpu_has_bf16(amd_bf16) and not cpu_has_bf16(amd_avx2)
    # the measured machines: AMX 4.4x fp32, AMD AVX512-BF16 2.1-2.2x, Intel AVX512-BF16 alone 0.57x
    assert cpu_runs_bf16_fast(intel_amx) and cpu_runs_bf16_fast(amd_bf16)
    assert not cpu_runs_bf16_fast(intel_bf16) and not cpu_runs_bf16_fast(amd_avx2)
    assert not cpu_runs_bf16_fast("")


@pytest.mark.parametrize("out_channels", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_wide_head_is_the_convolution_at_every_width_and_input_precision(out_channels, dtype, channels_last):
    """WideHead pads to its column multiple and converts its input's precision in one copy: every
    output width (all remainders) equals the plain convolution of the input as float32."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, out_channels, 5)
    head = WideHead(conv)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode():
        for width in range(20, 20 + head.s + 1):
            x = torch.randn(2, 16, 13, width).to(dtype).contiguous(memory_format=layout)
            expected = conv(x.float())
            assert torch.allclose(head(x), expected, atol=1e-5), width
