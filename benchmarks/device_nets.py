"""Paper-size U-net and SRGAN generator inference on a GPU: a standalone script (Keras 3 on torch).

Needs only numpy, torch, keras and ``cathodeflow.models`` (no TensorFlow, Dask or Zarr;
``KERAS_BACKEND`` is set to ``torch`` before Keras is imported). Run from the repository root::

    python benchmarks/device_nets.py                      # both networks, batches 1 and 4
    python benchmarks/device_nets.py --net unet --tile 512 --batch 1 8 --repeat 10 --out results/

**U-net** (``--net unet``): :func:`cathodeflow.models.unet.build_unet` with the paper's
configuration (depth 5, 32 filters, dilation 4), timed on batches of windows of one tile plus
its halo on each side (halo = the receptive-field radius, 383 px, rounded up to the pooling
multiple 16: 384 px; tile 1024 → window 1792²), as the tiled stage feeds it.

**SRGAN** (``--net srgan``): :func:`cathodeflow.models.srgan.build_generator` with the paper's
configuration (16 residual blocks, 64 filters, 256 up-sampling filters), on batches of
low-resolution windows of one tile (``--tile-lr``, default 520 px, the stage's tile) plus the
halo (the receptive-field radius, 40 px, rounded up to 26: 52 px; window 624² → 1680² output).

Random weights (speed does not depend on them). Variants: float32 (torch defaults: cuDNN may
use TF32), and, on CUDA, ``torch.autocast`` to bfloat16 and to float16. Each variant's first
call (cuDNN autotuning, ``torch.backends.cudnn.benchmark = True``) is timed apart. Printed,
and written as JSON to ``$OUT/device_nets.json`` (or ``--out``): per network and variant the
median time of a batch, output megapixels per second (tile pixels, halos excluded), network
megapixels per second (the U-net's window pixels, the SRGAN's output window pixels) and
TFLOP/s (convolution multiply-adds × 2: :func:`flops_per_pixel`,
:func:`generator_flops_per_output_pixel`), peak GPU memory, and the largest difference of the
output from float32; also (``--whole``) one whole-image call on an image of 2 × 2 tiles, whose
time against the batch of 4 tile windows is the tiling overhead, and on CUDA the measured
matrix-multiply peak (torch, 8192³, float32 without TF32, bfloat16, float16).

On a machine without CUDA it runs float32 on the CPU (a check that it works; use small
``--tile``). This module also holds the FLOP counts that ``benchmarks/bench_unet.py`` and
``benchmarks/bench_sr.py`` use; it imports nothing heavy at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def conv_macs_per_pixel(model) -> dict[str, float]:
    """Multiply-adds per full-resolution pixel of each Conv2D / Conv2DTranspose of a model.

    A k×k Conv2D from c_in to c_out channels whose output grid is s× coarser (per axis) than
    the input costs k²·c_in·c_out / s² per input pixel; a transposed convolution with kernel
    (kh, kw) and strides (sh, sw) gives each output pixel kh·kw/(sh·sw) taps, i.e.
    kh·kw/(sh·sw)·c_in·c_out per pixel of its output grid. The grid of every layer is followed
    through the functional graph from the input (MaxPooling2D and strided convolutions make it
    coarser, transposed convolutions finer), so nothing depends on layer names. Biases, ReLUs,
    poolings, concatenations and the softmax (O(channels) per pixel) are not counted.

    Parameters
    ----------
    model : keras.Model
        A functional model with one image input (B, H, W, C), e.g. from ``build_unet``.

    Returns
    -------
    macs : dict, layer name → multiply-adds per pixel of the input grid (float)
    """
    import keras

    scale = {id(model.inputs[0]): 1.0}  # input pixels per pixel of a tensor's grid, per axis
    macs = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        s = scale[id(ins[0])]
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw, c_out, c_in = layer.kernel.shape
            sh, sw = layer.strides
            s /= sh
            macs[layer.name] = kh * kw / (sh * sw) * c_in * c_out / s**2
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, c_out = layer.kernel.shape
            s *= layer.strides[0]
            macs[layer.name] = kh * kw * c_in * c_out / s**2
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            s *= layer.strides[0]
        scale[id(layer.output)] = s
    return macs


def generator_macs_per_output_pixel(cfg) -> dict[str, float]:
    """Multiply-adds of the generator's Conv2Ds per high-resolution output pixel (closed form,
    derived in ``benchmarks/bench_sr.py``'s docstring).

    Parameters
    ----------
    cfg : cathodeflow.models.srgan.SRGANConfig

    Returns
    -------
    macs : dict, layer group (``in_conv``, ``res_blocks``, ``post_conv``, ``up_conv``,
        ``out_conv``) → multiply-adds per output pixel (float)
    """
    lr = (cfg.scale_den / cfg.scale_num) ** 2  # low-resolution px per output px
    f, u = cfg.filters, cfg.upsample_filters
    return {
        "in_conv": lr * cfg.input_kernel**2 * f,
        "res_blocks": lr * 2 * cfg.n_blocks * 9 * f * f,
        "post_conv": lr * 9 * f * f,
        "up_conv": 9 * f * u / 4,  # the 35/26-resized grid has ¼ of the output pixels
        "out_conv": cfg.output_kernel**2 * (u // 4),
    }


def generator_flops_per_output_pixel(cfg) -> float:
    """2 × :func:`generator_macs_per_output_pixel` summed: convolution FLOP per output pixel."""
    return 2.0 * sum(generator_macs_per_output_pixel(cfg).values())


def flops_per_pixel(model) -> float:
    """FLOPs of one forward pass per pixel of the network's input/output grid:
    2 × the sum of :func:`conv_macs_per_pixel`."""
    return 2.0 * float(sum(conv_macs_per_pixel(model).values()))


def _time_variant(model, x, *, amp, repeat: int, device) -> tuple[dict, object]:
    """Times of ``model(x)`` under ``torch.autocast(amp)`` (None: float32)."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), ctx:
        sync()
        t0 = time.perf_counter()
        y = model(x, training=False)
        sync()
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            y = model(x, training=False)
            sync()
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"first_call_s": first, "times_s": times, "median_s": float(np.median(times)),
            "peak_gpu_memory_gib": peak}, y.float()


def matmul_tflops(device, dtype, n: int = 8192, repeat: int = 10) -> float:
    """Median TFLOP/s of an n×n×n torch matrix product of ``dtype`` on ``device`` (3 warm-ups;
    2n³ FLOP each): the machine's measured matrix-multiply peak."""
    import torch

    a = torch.rand((n, n), device=device, dtype=dtype)
    b = torch.rand((n, n), device=device, dtype=dtype)
    times = []
    for i in range(3 + repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / float(np.median(times)) / 1e12


def _bench_network(label, model, *, make_input, batches, repeat, device, amps, out_px, net_px, flops_net_px,
                   runs: list) -> None:
    """Times ``model`` on ``make_input(batch)`` for each batch size and variant; appends one
    dict per (batch, variant) to ``runs`` and prints a row. ``out_px``, ``net_px``: output and
    network pixels of one window; ``flops_net_px``: FLOP per network pixel."""
    import torch

    for batch in batches:
        x = make_input(int(batch))
        reference = None
        for variant, amp in amps.items():
            try:
                r, y = _time_variant(model, x, amp=amp, repeat=int(repeat), device=device)
            except torch.cuda.OutOfMemoryError as e:
                r, y = {"error": f"OutOfMemoryError: {str(e).splitlines()[0]}"}, None
                torch.cuda.empty_cache()
            if y is not None:
                if reference is None:
                    reference = y
                r["max_abs_diff_vs_float32"] = float((y - reference).abs().max())
                r |= {"output_mpx_per_s": batch * out_px / r["median_s"] / 1e6,
                      "network_mpx_per_s": batch * net_px / r["median_s"] / 1e6,
                      "tflop_per_s": flops_net_px * batch * net_px / r["median_s"] / 1e12}
                gib = r["peak_gpu_memory_gib"]
                print(f"{label:11s} {batch:5d} {variant:18s} {r['first_call_s']:8.3f} {r['median_s']:9.4f} "
                      f"{r['output_mpx_per_s']:12.4g} {r['network_mpx_per_s']:13.4g} {r['tflop_per_s']:8.3g} "
                      f"{'—' if gib is None else f'{gib:.1f}':>8s} {r['max_abs_diff_vs_float32']:15.2e}")
            else:
                print(f"{label:11s} {batch:5d} {variant:18s} {r['error']}")
            runs.append({"batch": int(batch), "variant": variant, **r})
            del y
        del x, reference


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/device_nets.py", description=__doc__.splitlines()[0])
    p.add_argument("--net", nargs="+", choices=("unet", "srgan"), default=["unet", "srgan"],
                   help="networks to time (default both)")
    p.add_argument("--tile", type=int, default=1024, help="U-net output tile edge (px); the window adds the halo")
    p.add_argument("--tile-lr", type=int, default=520,
                   help="SRGAN low-resolution tile edge (px, rounded up to 26); the window adds the halo")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="batch sizes (windows per call)")
    p.add_argument("--whole", type=int, default=2,
                   help="also time one whole-image call on an image of this many tiles per side (its window: "
                        "image + halo), against the batch of as many tile windows: the tiling overhead "
                        "(default 2; 0: skip)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per variant after the first")
    p.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                   help="folder of device_nets.json (default $OUT; none: print only)")
    args = p.parse_args(argv)

    os.environ["KERAS_BACKEND"] = "torch"
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # run as a script from a source tree: find cathodeflow
        sys.path.insert(0, root)
    import keras
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)  # (keras.utils.set_random_seed would import TensorFlow where installed)
    amps = {"float32": None}
    if device.type == "cuda":
        amps |= {"autocast bfloat16": torch.bfloat16, "autocast float16": torch.float16}

    def make_input(shape):
        return lambda batch: torch.rand((batch, *shape, 1), device=device)

    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "keras": keras.__version__,
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()},
        "keras_backend": keras.backend.backend(),
        "networks": {},
    }
    if device.type == "cuda":
        result["matmul_peak_tflop_per_s"] = {str(dt).removeprefix("torch."): matmul_tflops(device, dt)
                                             for dt in (torch.float32, torch.bfloat16, torch.float16)}
    print(f"{result['device']}; matmul peak (TFLOP/s): {result.get('matmul_peak_tflop_per_s', '—')}")
    print(f"{'net':11s} {'batch':>5s} {'variant':18s} {'first s':>8s} {'median s':>9s} {'output MP/s':>12s} "
          f"{'network MP/s':>13s} {'TFLOP/s':>8s} {'GPU GiB':>8s} {'max|Δ| vs fp32':>15s}")
    if "unet" in args.net:
        from cathodeflow.models.unet import UNetConfig, build_unet, receptive_field_radius

        cfg = UNetConfig()
        m = cfg.multiple
        halo = -(-receptive_field_radius(cfg) // m) * m
        tile = -(-int(args.tile) // m) * m
        window = tile + 2 * halo
        model = build_unet(cfg)  # Keras puts the variables on the GPU when torch sees one
        flops_px = flops_per_pixel(model)
        entry = {"architecture": cfg.to_dict(), "parameters": int(model.count_params()),
                 "mflop_per_network_pixel": flops_px / 1e6, "halo_px": halo, "tile_px": tile,
                 "window_px": window, "runs": []}
        _bench_network("unet", model, make_input=make_input((window, window)), batches=args.batch,
                       repeat=args.repeat, device=device, amps=amps, out_px=tile**2, net_px=window**2,
                       flops_net_px=flops_px, runs=entry["runs"])
        if args.whole:
            image = args.whole * tile
            entry |= {"whole_image_px": image, "whole_window_px": image + 2 * halo, "whole_runs": []}
            _bench_network("unet whole", model, make_input=make_input((image + 2 * halo,) * 2), batches=[1],
                           repeat=args.repeat, device=device, amps=amps, out_px=image**2,
                           net_px=(image + 2 * halo) ** 2, flops_net_px=flops_px, runs=entry["whole_runs"])
        result["networks"]["unet"] = entry
        del model
    if "srgan" in args.net:
        from cathodeflow.models.srgan import SRGANConfig, build_generator, srgan_receptive_field_radius

        cfg = SRGANConfig()
        m = cfg.lr_multiple
        halo = -(-srgan_receptive_field_radius(cfg) // m) * m
        tile = -(-int(args.tile_lr) // m) * m
        window = tile + 2 * halo
        hr = lambda n: n * cfg.scale_num // cfg.scale_den  # noqa: E731
        model = build_generator(cfg)
        flops_px = generator_flops_per_output_pixel(cfg)
        entry = {"architecture": cfg.to_dict(), "parameters": int(model.count_params()),
                 "mflop_per_output_pixel": flops_px / 1e6, "halo_lr_px": halo, "tile_lr_px": tile,
                 "window_lr_px": window, "window_hr_px": hr(window), "tile_hr_px": hr(tile), "runs": []}
        _bench_network("srgan", model, make_input=make_input((window, window)), batches=args.batch,
                       repeat=args.repeat, device=device, amps=amps, out_px=hr(tile) ** 2,
                       net_px=hr(window) ** 2, flops_net_px=flops_px, runs=entry["runs"])
        if args.whole:
            image = args.whole * tile
            entry |= {"whole_image_lr_px": image, "whole_window_lr_px": image + 2 * halo, "whole_runs": []}
            _bench_network("srgan whole", model, make_input=make_input((image + 2 * halo,) * 2), batches=[1],
                           repeat=args.repeat, device=device, amps=amps, out_px=hr(image) ** 2,
                           net_px=hr(image + 2 * halo) ** 2, flops_net_px=flops_px, runs=entry["whole_runs"])
        result["networks"]["srgan"] = entry
        del model
    result["heavy_modules_loaded"] = sorted(n for n in ("tensorflow", "dask", "zarr", "jax") if n in sys.modules)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "device_nets.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
