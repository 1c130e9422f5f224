"""SRGAN super-resolution throughput on this CPU (paper §2.3.1, Fig. 3a; DESIGN §5–6).

What it measures, for the paper-size generator (``SRGANConfig()``: 16 residual blocks, 64
filters, 256 up-sampling filters; class :class:`SRInference`) and the shipped small one
(the architecture of the registry's ``srgan-small-v1``: 6 blocks, 32 filters, 128 up-sampling
filters, ``input_skip = 1``; class :class:`SRInferenceSmall`), both with random weights saved
to a temporary weights file (speed does not depend on the weights):

- ``time_whole``: ``cathodeflow.stages.srgan.srgan_superres(lr, weights=…)`` with
  ``tile_lr=None``: one window = the image plus the reflected halo, padded to the 26-px grid;
- ``time_tiled``: ``srgan_superres_dask(da.from_array(lr, chunks=tile), setup=…, tile_lr=tile,
  intensity=(lo, hi)).compute(scheduler="threads", num_workers=--workers)``, with ``(lo, hi)``
  the whole image's percentiles computed in the call (as ``srgan_stage_dask`` does);
- ``track_matmul_peak_gflops``: :func:`benchmarks.bench_unet.matmul_gflops` (numpy float32
  4096² matmul, median of 5), the machine's attainable peak.

The generator is compiled for inference (``jit_compile="auto"``: XLA on TensorFlow), which
compiles once per window shape and process, so each variant's first call (compilation) is
timed apart and left out of the median. ``info()`` gives per variant the output megapixels per
second (pixels of the ⌊H·35/13⌋ × ⌊W·35/13⌋ result, halos excluded), the convolution GFLOP/s
(:func:`generator_flops_per_output_pixel` × high-resolution pixels of all windows / time) and
its fraction of the matmul peak; the theoretical tiling overhead (network pixels of the
tiled windows incl. halos / those of the whole-image window) next to the measured
``tiled / whole``; the dense-resize work (:func:`resize_macs`); max |ΔÎ| tiled vs whole.

FLOP count (convolutions only). 2 × the multiply-adds of every Conv2D at its resolution, per
pixel of the generator's high-resolution output grid (a window of h × w low-resolution px,
multiples of 26, gives (h·35/13) × (w·35/13) px, so there are (13/35)² low-resolution and ¼
intermediate pixels per output pixel). With f filters, u up-sampling filters, B residual
blocks and kernels k_in, k_out::

    MAC/px = (13/35)²·[k_in²·f + (2B + 1)·9f²]     in_conv, 2 convs per block, post_conv (LR grid)
           + ¼·9·f·u                               up_conv on the 35/26-resized grid
           + k_out²·(u/4)                          out_conv on the HR grid (u/4 channels → 1)
    paper (B = 16, f = 64, u = 256):     168,544 + 36,864 + 5,184 = 210,592 MAC/px = 0.4212 MFLOP/px
    small (B = 6, f = 32, u = 128):       16,886 +  9,216 + 2,592 =  28,694 MAC/px = 0.0574 MFLOP/px

BatchNorm, PReLU, the skips and the pixel shuffle (O(channels) per pixel) are left out. The
fixed 35/26 resize (and the 35/13 input skip) is a linear interpolation with 2 taps per
output pixel, but the layer applies it as two dense matrix products (``einsum`` with the
(n_out, n_in) :func:`~cathodeflow.models.srgan.interpolation_matrix`), whose cost grows with
the window edge: :func:`resize_macs` counts it apart (for a 1144² window of the paper net
about 15 % on top of the convolutions, for the small net's 1092² window almost 60 %), so a
whole-image call does more work per pixel than tiles do.

Sizes: a 1024 × 1024 low-resolution image (→ 2756 × 2756, the paper's size class: its
low-resolution images are ~1000 px across at 38.5 nm) with the stage's default 520-px tiles.
``--shape HxW`` and ``--chunk-px N`` of ``python -m benchmarks`` set them when given (the
tile is rounded up to a multiple of 26; their phase-map defaults, 4478x5972 and 2048, select
this suite's own), e.g. ``python -m benchmarks sr --shape 260x260 --chunk-px 104``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import common
from .bench_unet import matmul_gflops
from .device_nets import generator_flops_per_output_pixel, generator_macs_per_output_pixel  # noqa: F401 - the FLOP count lives there

#: This suite's low-resolution image shape and tile edge (px) when ``--shape`` / ``--chunk-px``
#: are not given.
IMAGE_SHAPE = (1024, 1024)
TILE_LR = 520  # cathodeflow.stages.srgan.DEFAULT_TILE_LR


def run_sizes() -> tuple[tuple[int, int], int]:
    """Low-resolution image shape and tile edge of this run.

    Returns
    -------
    shape : (H, W), ``common.config.shape`` unless it is the phase-map default, then
        :data:`IMAGE_SHAPE`
    tile_lr : int, ``common.config.chunk_px`` rounded up to a multiple of 26 unless it is the
        default, then :data:`TILE_LR`
    """
    from cathodeflow.tiling.geometry import round_up_to_multiple

    default = common.RunConfig()
    shape = tuple(int(v) for v in common.config.shape)
    shape = IMAGE_SHAPE if shape == tuple(default.shape) else shape
    tile = int(common.config.chunk_px)
    return shape, (TILE_LR if tile == default.chunk_px else round_up_to_multiple(tile, 26))


def resize_macs(window: tuple[int, int], cfg) -> float:
    """Multiply-adds of the dense resizes of one window of ``(h, w)`` low-resolution px.

    The ``resize`` layer computes ``einsum("oh,bhwc->bowc")`` then ``einsum("pw,bowc->bopc")``
    with o = ⌊h·num/(2·den)⌋, p = ⌊w·num/(2·den)⌋ and c = ``filters``: o·h·w·c + o·p·w·c; with
    ``input_skip`` the ``input_skip`` layer does the same by num/den on one channel.
    """
    h, w = (int(v) for v in window)
    total = 0.0
    for factor, c in ((cfg.scale_num, cfg.filters), (2 * cfg.scale_num, cfg.input_skip)):
        o, p = h * factor // (2 * cfg.scale_den), w * factor // (2 * cfg.scale_den)
        total += c * (o * h * w + o * p * w)
    return total


def sr_windows(shape, *, tile_lr: int, halo: int, multiple: int = 26) -> list[tuple[int, int]]:
    """Low-resolution window shapes ``(h, w)`` the generator processes for an image of
    ``shape`` cut in tiles of ``tile_lr`` (tile + halo on every side, padded to multiples of
    ``multiple``: the windows of ``cathodeflow.stages.srgan``); ``tile_lr >= max(shape)``: the
    one window of the whole-image call."""
    from cathodeflow.stages.unet import tile_grid
    from cathodeflow.tiling.geometry import round_up_to_multiple

    grid = tile_grid(shape, tile_px=round_up_to_multiple(tile_lr, multiple), halo=halo, multiple=multiple)
    return [(t.wy1 - t.y0 + t.halo, t.wx1 - t.x0 + t.halo) for row in grid for t in row]


class SRInference(common.NetworkTimings):
    """Paper-size SRGAN generator (16 blocks, 64 filters, 256 up-sampling filters):
    whole-image vs tiled super-resolution, FLOP rate against the numpy matmul peak."""

    repeat = 2
    timeout = 1800
    #: ``SRGANConfig`` fields of the generator under test (None: the registry's record below)
    architecture: dict | None = {}
    registry_name: str | None = None
    matmul_n = 4096
    matmul_repeat = 5
    ratios = {"tiled / whole": ("time_tiled", "time_whole")}

    def _config(self):
        from cathodeflow.models.registry import resolve_weights
        from cathodeflow.models.srgan import SRGANConfig

        if self.registry_name is not None:
            arch = resolve_weights(self.registry_name).architecture
            return SRGANConfig.from_dict({k: v for k, v in arch.items() if k != "kind"})
        return SRGANConfig(**self.architecture)

    def setup(self):
        import keras

        from cathodeflow.models.registry import save_model_weights
        from cathodeflow.models.srgan import build_generator
        from cathodeflow.stages.srgan import SRGANSetup, srgan_superres

        self.shape, tile = run_sizes()
        self.cfg = self._config()
        self.tmp = tempfile.mkdtemp(prefix="bench-sr-")
        keras.utils.set_random_seed(0)
        self.model = build_generator(self.cfg)
        path = Path(self.tmp) / "bench-srgan.weights.h5"
        save_model_weights(
            self.model, path, architecture={"kind": "srgan", **self.cfg.to_dict()},
            training={"note": "random initial weights (benchmark)"}, pixel_size_um=0.0385,
            normalisation={"method": "percentile", "q": [0.5, 99.5]},
        )
        self.weights = str(path)
        self.sr = SRGANSetup.from_weights(self.weights)
        self.tile_lr = self.sr.check_tile(int(tile))
        rng = np.random.default_rng(0)
        self.image = rng.random(self.shape, dtype=np.float32)
        self._reset_timings()
        # TensorFlow start-up and the model cache, outside the timings
        srgan_superres(self.image[:26, :26], weights=self.weights)

    def time_whole(self):
        from cathodeflow.stages.srgan import srgan_superres

        self._run("whole", lambda: srgan_superres(self.image, weights=self.weights))

    def time_tiled(self):
        import dask.array as da

        from cathodeflow.models.normalise import intensity_range
        from cathodeflow.stages.srgan import srgan_superres_dask

        def call():
            lo, hi = intensity_range(self.image, q=tuple(self.sr.normalisation["q"]))
            img = da.from_array(self.image, chunks=self.tile_lr)
            sr = srgan_superres_dask(img, setup=self.sr, tile_lr=self.tile_lr, intensity=(lo, hi))
            return sr.compute(scheduler="threads", num_workers=common.config.n_workers)

        self._run("tiled", call)

    def track_matmul_peak_gflops(self):
        self.peak = matmul_gflops(self.matmul_n, repeat=self.matmul_repeat)
        return round(self.peak, 1)

    track_matmul_peak_gflops.unit = "GFLOP/s"

    def track_mflop_per_output_pixel(self):
        return round(generator_flops_per_output_pixel(self.cfg) / 1e6, 4)

    track_mflop_per_output_pixel.unit = "MFLOP per output pixel (convolutions)"

    # ------------------------------------------------------------------ results
    def info(self) -> dict:
        from cathodeflow.stages.superres import sr_shape

        H, W = self.shape
        Ho, Wo = sr_shape(self.shape)
        halo, m = self.sr.halo, self.sr.multiple
        hr = (self.cfg.scale_num / self.cfg.scale_den) ** 2  # output px per LR px of a window
        flops_px = generator_flops_per_output_pixel(self.cfg)
        wins = {"whole": sr_windows(self.shape, tile_lr=max(self.shape), halo=halo, multiple=m),
                "tiled": sr_windows(self.shape, tile_lr=self.tile_lr, halo=halo, multiple=m)}
        net = {k: sum(h * w for h, w in v) for k, v in wins.items()}
        variants = {}
        for name, ws in wins.items():
            ts = self.times.get(name, [])[1:]  # the first call (XLA compilation) is timed apart
            if not ts:
                continue
            med = float(np.median(ts))
            conv_flop = flops_px * net[name] * hr
            resize_flop = 2.0 * sum(resize_macs(w, self.cfg) for w in ws)
            gflops = conv_flop / med / 1e9
            variants[name] = {
                "median_s": med,
                "n": len(ts),
                "first_call_s": self.times[name][0],
                "windows": len(ws),
                "network_mpx_lr": net[name] / 1e6,
                "network_mpx_hr": net[name] * hr / 1e6,
                "output_mpx": Ho * Wo / 1e6,
                "output_mpx_per_s": Ho * Wo / med / 1e6,
                "conv_gflop": conv_flop / 1e9,
                "dense_resize_gflop": resize_flop / 1e9,
                "gflop_per_s": gflops,
                "fraction_of_matmul_peak": gflops / self.peak if self.peak else None,
            }
        info = {
            "architecture": self.cfg.to_dict(),
            "registry_name": self.registry_name,
            "parameters": int(self.model.count_params()),
            "receptive_field_radius_lr_px": self.sr.radius,
            "halo_lr_px": halo,
            "image_shape_lr": [H, W],
            "output_shape": [Ho, Wo],
            "tile_lr": self.tile_lr,
            "mflop_per_output_pixel": flops_px / 1e6,
            "mac_per_output_pixel": generator_macs_per_output_pixel(self.cfg),
            "matmul_peak_gflop_per_s": self.peak,
            "network_pixels": {
                "whole_mpx_lr": net["whole"] / 1e6,
                "tiled_mpx_lr": net["tiled"] / 1e6,
                "whole_over_image": net["whole"] / (H * W),
                "tiled_over_image": net["tiled"] / (H * W),
                "tiled_over_whole": net["tiled"] / net["whole"],
            },
            "variants": variants,
            **self._common_info(),
        }
        return info

    @staticmethod
    def summarize(info: dict) -> list[str]:
        a, npx = info["architecture"], info["network_pixels"]
        H, W = info["image_shape_lr"]
        Ho, Wo = info["output_shape"]
        peak = info.get("matmul_peak_gflop_per_s")
        lines = [
            f"  SRGAN generator {a['n_blocks']} blocks, {a['filters']} filters, {a['upsample_filters']} up-sampling "
            f"filters, input_skip {a['input_skip']} ({info['parameters']:,} parameters): "
            f"{info['mflop_per_output_pixel']:.4f} MFLOP (convolutions) per output pixel; receptive-field "
            f"radius {info['receptive_field_radius_lr_px']} px, halo {info['halo_lr_px']} px (low resolution)",
            f"  image {H}x{W} → {Ho}x{Wo}, tiles {info['tile_lr']}: network pixels whole {npx['whole_mpx_lr']:.3f} "
            f"LR MP ({npx['whole_over_image']:.2f}× the image), tiled {npx['tiled_mpx_lr']:.3f} LR MP "
            f"({npx['tiled_over_image']:.2f}×); theoretical tiled / whole {npx['tiled_over_whole']:.2f}×",
            f"  {'variant':15s} {'median s':>9s} {'output MP/s':>12s} {'GFLOP/s':>8s} "
            f"{'of peak' if peak else '':>8s} {'+dense resize':>14s}   (matmul peak {peak and round(peak)} GFLOP/s)",
        ]
        labels = {"whole": "whole image", "tiled": "tiled, threads"}
        for name, v in info["variants"].items():
            frac = v["fraction_of_matmul_peak"]
            extra = v["dense_resize_gflop"] / v["conv_gflop"]
            lines.append(
                f"  {labels[name]:15s} {v['median_s']:9.3f} {v['output_mpx_per_s']:12.4f} {v['gflop_per_s']:8.1f} "
                f"{'' if frac is None else f'{100 * frac:7.1f}%'} {100 * extra:13.1f}%"
                f"   (first call {v['first_call_s']:.2f} s, {v['windows']} window(s))"
            )
        lines.append("  (+dense resize: FLOP of the einsum resizes on top of the convolutions' count)")
        lines.append(f"  peak RSS of the process so far: {info['peak_rss_mib_so_far']:.0f} MiB")
        if "tiled_vs_whole_max_abs_diff" in info:
            lines.append(f"  tiled vs whole: max |ΔÎ| = {info['tiled_vs_whole_max_abs_diff']:.2e}")
        return lines


class SRInferenceSmall(SRInference):
    """The small shipped generator (``srgan-small-v1``: 6 blocks, 32 filters, 128 up-sampling
    filters, input skip), random weights: the same measurements."""

    repeat = 3
    architecture = None
    registry_name = "srgan-small-v1"
