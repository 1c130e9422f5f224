"""Paper-size U-net inference on a GPU: a standalone script (Keras 3 on torch).

Needs only numpy, torch, keras and ``cathodeflow.models.unet`` (no TensorFlow, Dask or Zarr;
``KERAS_BACKEND`` is set to ``torch`` before Keras is imported). Run from the repository root::

    python benchmarks/device_unet.py                      # tile 1024, batches 1 and 4
    python benchmarks/device_unet.py --tile 512 --batch 1 8 --repeat 10 --out results/

It builds :func:`cathodeflow.models.unet.build_unet` with the paper's configuration (depth 5,
32 filters, dilation 4; random weights — speed does not depend on them) and times the network
alone on batches of windows of one tile plus its halo on each side (halo = the receptive-field
radius, 383 px, rounded up to the pooling multiple 16: 384 px; tile 1024 → window 1792²), as the
tiled stage feeds it. Variants: float32 (torch defaults: cuDNN may use TF32), and, on CUDA,
``torch.autocast`` to bfloat16 and to float16. Each variant's first call (cuDNN autotuning,
``torch.backends.cudnn.benchmark = True``) is timed apart. Printed, and written as JSON to
``$OUT/device_unet.json`` (or ``--out``): per variant the median time of a batch, output
megapixels per second (tile pixels, halos excluded), network megapixels per second and
TFLOP/s (:func:`flops_per_pixel`: conv multiply-adds × 2), peak GPU memory, and the largest
difference of the softmax output from float32.

On a machine without CUDA it runs float32 on the CPU (a check that it works; use small
``--tile``). This module also holds the FLOP count that ``benchmarks/bench_unet.py`` uses; it
imports nothing heavy at import time.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/device_unet.py", description=__doc__.splitlines()[0])
    p.add_argument("--tile", type=int, default=1024, help="output tile edge (px); the window adds the halo")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="batch sizes (windows per call)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per variant after the first")
    p.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                   help="folder of device_unet.json (default $OUT; none: print only)")
    args = p.parse_args(argv)

    os.environ["KERAS_BACKEND"] = "torch"
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # run as a script from a source tree: find cathodeflow
        sys.path.insert(0, root)
    import keras
    import torch

    from cathodeflow.models.unet import UNetConfig, build_unet, receptive_field_radius

    cfg = UNetConfig()
    m = cfg.multiple
    halo = -(-receptive_field_radius(cfg) // m) * m
    tile = -(-int(args.tile) // m) * m
    window = tile + 2 * halo
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)  # (keras.utils.set_random_seed would import TensorFlow where installed)
    model = build_unet(cfg)  # Keras puts the variables on the GPU when torch sees one
    flops_px = flops_per_pixel(model)
    amps = {"float32": None}
    if device.type == "cuda":
        amps |= {"autocast bfloat16": torch.bfloat16, "autocast float16": torch.float16}

    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "keras": keras.__version__,
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()},
        "keras_backend": keras.backend.backend(),
        "architecture": cfg.to_dict(), "parameters": int(model.count_params()),
        "mflop_per_network_pixel": flops_px / 1e6, "halo_px": halo, "tile_px": tile, "window_px": window,
        "runs": [],
    }
    print(f"{result['device']}; U-net {cfg.to_dict()}: {flops_px / 1e6:.4f} MFLOP per network pixel; "
          f"tile {tile} + halo {halo} → window {window}²")
    print(f"{'batch':>5s} {'variant':18s} {'first s':>8s} {'median s':>9s} {'output MP/s':>12s} "
          f"{'network MP/s':>13s} {'TFLOP/s':>8s} {'GPU GiB':>8s} {'max|Δ| vs fp32':>15s}")
    for batch in args.batch:
        x = torch.rand((int(batch), window, window, 1), device=device, generator=None)
        reference = None
        for label, amp in amps.items():
            try:
                r, y = _time_variant(model, x, amp=amp, repeat=int(args.repeat), device=device)
            except torch.cuda.OutOfMemoryError as e:
                r, y = {"error": f"OutOfMemoryError: {str(e).splitlines()[0]}"}, None
                torch.cuda.empty_cache()
            if y is not None:
                if reference is None:
                    reference = y
                r["max_abs_diff_vs_float32"] = float((y - reference).abs().max())
                net_px, out_px = batch * window**2, batch * tile**2
                r |= {"output_mpx_per_s": out_px / r["median_s"] / 1e6,
                      "network_mpx_per_s": net_px / r["median_s"] / 1e6,
                      "tflop_per_s": flops_px * net_px / r["median_s"] / 1e12}
                gib = r["peak_gpu_memory_gib"]
                print(f"{batch:5d} {label:18s} {r['first_call_s']:8.3f} {r['median_s']:9.4f} "
                      f"{r['output_mpx_per_s']:12.4g} {r['network_mpx_per_s']:13.4g} {r['tflop_per_s']:8.3g} "
                      f"{'—' if gib is None else f'{gib:.1f}':>8s} {r['max_abs_diff_vs_float32']:15.2e}")
            else:
                print(f"{batch:5d} {label:18s} {r['error']}")
            result["runs"].append({"batch": int(batch), "variant": label, **r})
            del y
        del x, reference
    result["heavy_modules_loaded"] = sorted(n for n in ("tensorflow", "dask", "zarr", "jax") if n in sys.modules)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "device_unet.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
