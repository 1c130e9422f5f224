"""The FLOP and window counts of ``benchmarks/bench_sr.py`` against the Keras generator itself."""

import numpy as np
import pytest

pytest.importorskip("keras")


def _layer_by_layer(cfg, shape):
    """Conv2D multiply-adds (k_h·k_w·c_in·c_out × output pixels of the layer, read from the
    tensors of a real forward pass) and the dense-resize multiply-adds (from the resize layers'
    real input and output shapes) of ``build_generator(cfg)`` on a ``shape`` input; and the
    output's pixel count."""
    import keras

    from cathodeflow.models.srgan import build_generator

    model = build_generator(cfg)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    resizes = [model.get_layer(n) for n in ("resize", "input_skip") if n in {la.name for la in model.layers}]
    probe = keras.Model(model.inputs, [la.output for la in convs] + [la.input for la in resizes]
                        + [la.output for la in resizes] + [model.output])
    outs = [np.asarray(o) for o in probe([np.zeros((1, *shape, 1), np.float32)])]
    conv_outs, rest = outs[:len(convs)], outs[len(convs):]
    macs = {}
    for layer, y in zip(convs, conv_outs):
        kh, kw, c_in, c_out = layer.kernel.shape
        assert y.shape[-1] == c_out
        macs[layer.name] = kh * kw * c_in * c_out * y.shape[1] * y.shape[2]
    n = len(resizes)
    resize = sum(x.shape[3] * (y.shape[1] * x.shape[1] * x.shape[2] + y.shape[1] * y.shape[2] * x.shape[2])
                 for x, y in zip(rest[:n], rest[n:2 * n]))
    out = rest[-1]
    return macs, resize, out.shape[1] * out.shape[2]


@pytest.mark.parametrize("arch", [
    {"n_blocks": 1, "filters": 4, "upsample_filters": 8, "input_skip": 0},
    {"n_blocks": 2, "filters": 6, "upsample_filters": 12, "input_kernel": 5, "output_kernel": 3, "input_skip": 1},
])
def test_closed_form_flops_per_output_pixel_equal_a_layer_by_layer_count_of_a_tiny_generator(arch):
    from benchmarks.bench_sr import generator_flops_per_output_pixel, generator_macs_per_output_pixel, resize_macs
    from cathodeflow.models.srgan import SRGANConfig

    cfg = SRGANConfig(**arch)
    shape = (52, 78)  # multiples of 26, not square: 140 × 210 output px
    macs, resize, n_out = _layer_by_layer(cfg, shape)
    assert n_out == 140 * 210
    closed = generator_macs_per_output_pixel(cfg)
    assert sum(macs.values()) / n_out == pytest.approx(sum(closed.values()), rel=1e-12)
    assert generator_flops_per_output_pixel(cfg) == pytest.approx(2 * sum(macs.values()) / n_out, rel=1e-12)
    # group by group: the trunk at low resolution, up_conv on the 35/26 grid, out_conv at output resolution
    blocks = sum(v for k, v in macs.items() if k.startswith("res"))
    for group, count in (("in_conv", macs["in_conv"]), ("res_blocks", blocks), ("post_conv", macs["post_conv"]),
                         ("up_conv", macs["up_conv"]), ("out_conv", macs["out_conv"])):
        assert closed[group] == pytest.approx(count / n_out, rel=1e-12), group
    assert resize_macs(shape, cfg) == resize


def test_paper_generator_costs_0_4212_mflop_per_output_pixel():
    from benchmarks.bench_sr import generator_macs_per_output_pixel
    from cathodeflow.models.srgan import SRGANConfig

    # hand count: (13/35)²·(81·64 + 33·9·64²) + 9·64·256/4 + 81·64
    hand = (13 / 35) ** 2 * (81 * 64 + 33 * 9 * 64**2) + 9 * 64 * 256 / 4 + 81 * 64
    assert sum(generator_macs_per_output_pixel(SRGANConfig()).values()) == pytest.approx(hand, rel=1e-12)
    assert round(hand) == 210_592


def test_sr_windows_are_tile_plus_halo_padded_to_26_and_match_the_unet_window_areas():
    from benchmarks.bench_sr import sr_windows
    from benchmarks.bench_unet import network_pixels

    # whole 1024² image, halo 52: one window 1024 + 104 = 1128 → 1144 (a multiple of 26)
    assert sr_windows((1024, 1024), tile_lr=1024, halo=52) == [(1144, 1144)]
    # tiles of 520: 2 × 2 windows, 520 + 104 = 624 and 504 + 104 = 608 → 624
    assert sr_windows((1024, 1024), tile_lr=520, halo=52) == [(624, 624)] * 4
    for shape, tile in (((260, 390), 104), ((1024, 1024), 520), ((100, 300), 300)):
        areas = sum(h * w for h, w in sr_windows(shape, tile_lr=tile, halo=52))
        assert areas == network_pixels(shape, tile_px=tile, halo=52, multiple=26)
