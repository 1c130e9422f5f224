"""U-net inference throughput on this CPU (paper §2.3.2; DESIGN §5–6).

What it measures, for the paper-size network (depth 5, 32 filters, dilation 4; class
:class:`UNetInference`) and the small shipped configuration (depth 5, 12 filters, dilation 2;
class :class:`UNetInferenceSmall`), both with random weights (speed does not depend on them):

- ``time_whole``: ``cathodeflow.stages.unet.unet_probabilities(image, weights=…)``, one
  whole-image call (tile_px=None: one window = the image plus the reflected halo);
- ``time_tiled``: ``unet_probabilities_dask(…, tile_px)`` computed with Dask's threads
  scheduler; the ratio ``tiled / whole`` is the tiling overhead, next to its theoretical value
  (network pixels of the tiled windows / those of the whole-image window);
- ``time_window_eager`` / ``time_window_xla``: the network alone on one interior tile window
  (tile + 2 halos): ``predict_tile(model, window)`` against the same model compiled with
  ``jit_compile=True`` and called by ``predict_on_batch`` (XLA; its first call, which
  compiles, is timed apart);
- ``track_matmul_peak_gflops``: numpy float32 matmul n×n (n = 4096), median of 5, as the
  machine's attainable peak; ``info()`` gives per variant the output megapixels per second,
  the network GFLOP/s (:func:`flops_per_pixel` × network pixels / time) and the fraction of
  that peak.

FLOP count: :func:`benchmarks.device_nets.flops_per_pixel` (kept in the dependency-light GPU
script, imported here): 2 × the multiply-adds of every Conv2D and Conv2DTranspose at its
resolution, per pixel of the network's full-resolution grid (biases, ReLUs, poolings,
concatenations and the softmax, O(channels) per pixel, < 1 %, are not counted). Closed form for the U-net of :func:`cathodeflow.models.unet.build_unet` with k = 3, two
convolutions per level, f filters, depth D (L = D − 1), kernel-2 stride-2 up-sampling and
n_classes = 3 (every level's c_l = f·2^l convolution costs 9·f² per full-resolution pixel)::

    MAC/px = 9·f + 9f² + L·(4.5f² + 9f²)          encoder
           + L·(2f² + 18f² + 9f²)                  decoder (up, conv on the concat, conv)
           + 3f                                    1×1 output
    paper (f = 32, D = 5): 183,680 MAC/px = 0.367 MFLOP/px
    small (f = 12, D = 5):  25,920 MAC/px = 0.052 MFLOP/px (the shipped unet-small-v1)

Sizes: 2048 × 2048 image, 1024 px tiles by default. ``--shape HxW`` and ``--chunk-px N`` of
``python -m benchmarks`` set them when given (their phase-map defaults, 4478x5972 and 2048,
select this suite's own defaults), e.g. ``python -m benchmarks unet --shape 512x512
--chunk-px 256``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from . import common
from .device_nets import conv_macs_per_pixel, flops_per_pixel  # noqa: F401 - the FLOP count lives there

#: This suite's image shape and tile edge (px) when ``--shape`` / ``--chunk-px`` are not given.
IMAGE_SHAPE = (2048, 2048)
TILE_PX = 1024


def run_sizes() -> tuple[tuple[int, int], int]:
    """Image shape and tile edge of this run.

    Returns
    -------
    shape : (H, W), ``common.config.shape`` unless it is the phase-map default, then
        :data:`IMAGE_SHAPE`
    tile_px : int, ``common.config.chunk_px`` unless it is the default, then :data:`TILE_PX`
    """
    default = common.RunConfig()
    shape = tuple(int(v) for v in common.config.shape)
    shape = IMAGE_SHAPE if shape == tuple(default.shape) else shape
    tile = int(common.config.chunk_px)
    return shape, (TILE_PX if tile == default.chunk_px else tile)


def network_pixels(shape, *, tile_px: int, halo: int, multiple: int) -> int:
    """Pixels the network processes for an image of ``shape`` cut in tiles of ``tile_px``:
    the sum of the window areas of :func:`cathodeflow.stages.unet.tile_grid` (tile + halo on
    every side, padded to multiples of ``multiple``). ``tile_px >= max(shape)``: the
    whole-image call."""
    from cathodeflow.stages.unet import tile_grid
    from cathodeflow.tiling.geometry import round_up_to_multiple

    grid = tile_grid(shape, tile_px=round_up_to_multiple(tile_px, multiple), halo=halo, multiple=multiple)
    return int(sum((t.wy1 - t.y0 + t.halo) * (t.wx1 - t.x0 + t.halo) for row in grid for t in row))


def matmul_gflops(n: int = 4096, *, repeat: int = 5) -> float:
    """numpy float32 ``a @ b`` of n×n matrices: 2n³ FLOP / median time, in GFLOP/s (one
    untimed call first)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(int(repeat)):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / float(np.median(times)) / 1e9


class UNetInference(common.NetworkTimings):
    """Paper-size U-net (depth 5, 32 filters, dilation 4): whole-image vs tiled inference,
    network alone eager vs XLA, FLOP rate against the numpy matmul peak."""

    repeat = 2
    timeout = 1800
    #: ``UNetConfig`` fields of the network under test
    architecture = {"depth": 5, "filters": 32, "dilation": 4}
    matmul_n = 4096
    matmul_repeat = 5
    ratios = {
        "tiled / whole": ("time_tiled", "time_whole"),
        "window eager / XLA": ("time_window_eager", "time_window_xla"),
    }

    def setup(self):
        import keras

        from cathodeflow.models.registry import load_unet, save_model_weights
        from cathodeflow.models.unet import UNetConfig, build_unet, receptive_field_radius
        from cathodeflow.stages.unet import UNetSetup, tile_grid, unet_probabilities
        from cathodeflow.tiling.geometry import round_up_to_multiple

        self.shape, self.tile_px = run_sizes()
        self.cfg = UNetConfig(**self.architecture)
        self.tmp = tempfile.mkdtemp(prefix="bench-unet-")
        keras.utils.set_random_seed(0)
        path = Path(self.tmp) / "bench-unet.weights.h5"
        save_model_weights(
            build_unet(self.cfg), path, architecture={"kind": "unet", **self.cfg.to_dict()},
            training={"note": "random initial weights (benchmark)"}, pixel_size_um=0.0143,
            crack_threshold=0.5, normalisation={"method": "percentile", "q": [0.5, 99.5]},
        )
        self.weights = str(path)
        self.unet = UNetSetup.from_weights(self.weights)
        self.tile_px = round_up_to_multiple(self.tile_px, self.unet.multiple)
        self.radius = receptive_field_radius(self.cfg)
        self.model, _ = load_unet(self.weights)  # the cached model the stage uses
        self.model_xla, _ = load_unet(self.weights, cache=False)
        self.model_xla.compile(jit_compile=True)
        self.flops_px = flops_per_pixel(self.model)
        rng = np.random.default_rng(0)
        self.image = rng.random(self.shape, dtype=np.float32)
        # one interior-sized window (tile + 2 halos, padded to the pooling grid), as the tiles see
        n = 3 * self.tile_px
        t = tile_grid((n, n), tile_px=self.tile_px, halo=self.unet.halo, multiple=self.unet.multiple)[1][1]
        win = (t.wy1 - t.y0 + t.halo, t.wx1 - t.x0 + t.halo)
        self.window = rng.random(win, dtype=np.float32)
        self._reset_timings()
        # TensorFlow start-up and the model cache, outside the timings
        unet_probabilities(self.image[:16, :16], weights=self.weights)

    def time_whole(self):
        from cathodeflow.stages.unet import unet_probabilities

        self._run("whole", lambda: unet_probabilities(self.image, weights=self.weights))

    time_whole.warmup = False

    def time_tiled(self):
        import dask.array as da

        from cathodeflow.stages.unet import unet_probabilities_dask

        def call():
            img = da.from_array(self.image, chunks=self.tile_px)
            prob = unet_probabilities_dask(img, setup=self.unet, tile_px=self.tile_px)
            return prob.compute(scheduler="threads", num_workers=common.config.n_workers)

        self._run("tiled", call)

    time_tiled.warmup = False

    def time_window_eager(self):
        from cathodeflow.models.unet import predict_tile

        self._run("window_eager", lambda: predict_tile(self.model, self.window))

    time_window_eager.warmup = False

    def time_window_xla(self):
        x = self.window[None, :, :, None]
        self._run("window_xla", lambda: np.asarray(self.model_xla.predict_on_batch(x)))

    def track_matmul_peak_gflops(self):
        self.peak = matmul_gflops(self.matmul_n, repeat=self.matmul_repeat)
        return round(self.peak, 1)

    track_matmul_peak_gflops.unit = "GFLOP/s"

    def track_mflop_per_pixel(self):
        return round(self.flops_px / 1e6, 4)

    track_mflop_per_pixel.unit = "MFLOP per network pixel"

    # ------------------------------------------------------------------ results
    def _steady(self, name) -> list[float]:
        """Recorded times of a variant without its warm-up call (where the harness makes one)."""
        ts = self.times.get(name, [])
        return ts[1:] if getattr(getattr(self, f"time_{name}"), "warmup", True) else ts

    def info(self) -> dict:
        H, W = self.shape
        halo, m = self.unet.halo, self.unet.multiple
        px_whole = network_pixels(self.shape, tile_px=max(self.shape), halo=halo, multiple=m)
        px_tiled = network_pixels(self.shape, tile_px=self.tile_px, halo=halo, multiple=m)
        win = self.window.shape
        work = {  # (network pixels, output pixels) of one call
            "whole": (px_whole, H * W),
            "tiled": (px_tiled, H * W),
            "window_eager": (win[0] * win[1], self.tile_px**2),
            "window_xla": (win[0] * win[1], self.tile_px**2),
        }
        variants = {}
        for name, (net_px, out_px) in work.items():
            ts = self._steady(name)
            if not ts:
                continue
            med = float(np.median(ts))
            gflops = self.flops_px * net_px / med / 1e9
            variants[name] = {
                "median_s": med,
                "n": len(ts),
                "first_call_s": self.times[name][0] if len(ts) < len(self.times[name]) else None,
                "network_mpx": net_px / 1e6,
                "output_mpx": out_px / 1e6,
                "output_mpx_per_s": out_px / med / 1e6,
                "gflop_per_s": gflops,
                "fraction_of_matmul_peak": gflops / self.peak if self.peak else None,
            }
        info = {
            "architecture": self.cfg.to_dict(),
            "parameters": int(self.model.count_params()),
            "receptive_field_radius_px": self.radius,
            "halo_px": halo,
            "multiple_px": m,
            "image_shape": list(self.shape),
            "tile_px": self.tile_px,
            "window_shape": list(win),
            "mflop_per_network_pixel": self.flops_px / 1e6,
            "matmul_peak_gflop_per_s": self.peak,
            "network_pixels": {
                "whole_mpx": px_whole / 1e6,
                "tiled_mpx": px_tiled / 1e6,
                "whole_over_image": px_whole / (H * W),
                "tiled_over_image": px_tiled / (H * W),
                "tiled_over_whole": px_tiled / px_whole,
            },
            "variants": variants,
            **self._common_info(),
        }
        if "window_eager" in self.out and "window_xla" in self.out:
            info["xla_vs_eager_max_abs_diff"] = float(
                np.max(np.abs(self.out["window_xla"][0] - self.out["window_eager"])))
        return info

    @staticmethod
    def summarize(info: dict) -> list[str]:
        a, npx = info["architecture"], info["network_pixels"]
        H, W = info["image_shape"]
        peak = info.get("matmul_peak_gflop_per_s")
        lines = [
            f"  U-net depth {a['depth']}, {a['filters']} filters, dilation {a['dilation']} "
            f"({info['parameters']:,} parameters): {info['mflop_per_network_pixel']:.4f} MFLOP per network "
            f"pixel; receptive-field radius {info['receptive_field_radius_px']} px, halo {info['halo_px']} px",
            f"  image {H}x{W}, tiles {info['tile_px']}: network pixels whole {npx['whole_mpx']:.2f} MP "
            f"({npx['whole_over_image']:.2f}× the image), tiled {npx['tiled_mpx']:.2f} MP "
            f"({npx['tiled_over_image']:.2f}×); theoretical tiled / whole {npx['tiled_over_whole']:.2f}×",
            f"  {'variant':14s} {'median s':>9s} {'output MP/s':>12s} {'GFLOP/s':>8s} "
            f"{'of peak' if peak else '':>8s}   (matmul peak {peak and round(peak)} GFLOP/s)",
        ]
        labels = {"whole": "whole image", "tiled": "tiled, threads",
                  "window_eager": "window eager", "window_xla": "window XLA"}
        for name, v in info["variants"].items():
            frac = v["fraction_of_matmul_peak"]
            lines.append(
                f"  {labels[name]:14s} {v['median_s']:9.3f} {v['output_mpx_per_s']:12.4f} {v['gflop_per_s']:8.1f} "
                f"{'' if frac is None else f'{100 * frac:7.1f}%'}"
                + (f"   (first call {v['first_call_s']:.2f} s)" if v["first_call_s"] is not None else "")
            )
        w = info["window_shape"]
        lines.append(f"  (window = one interior tile of {info['tile_px']}² with its halos, {w[0]}x{w[1]} px)")
        lines.append(f"  peak RSS of the process so far: {info['peak_rss_mib_so_far']:.0f} MiB")
        if "tiled_vs_whole_max_abs_diff" in info:
            lines.append(f"  tiled vs whole: max |ΔŶ| = {info['tiled_vs_whole_max_abs_diff']:.2e}")
        if "xla_vs_eager_max_abs_diff" in info:
            lines.append(f"  XLA vs eager: max |ΔŶ| = {info['xla_vs_eager_max_abs_diff']:.2e}")
        return lines


class UNetInferenceSmall(UNetInference):
    """The small shipped U-net (depth 5, 12 filters, dilation 2): the same measurements."""

    repeat = 3
    architecture = {"depth": 5, "filters": 12, "dilation": 2}
