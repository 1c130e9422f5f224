"""Small SRGAN generator weights files for tests (random weights: the tests check plumbing and
tiling, not super-resolution quality)."""

from pathlib import Path

#: 10 residual blocks and 9-px outer kernels: receptive-field radius 28 px, so the halo is two
#: 26-px blocks (52 px) and tiles of 26 px are refused, while the network stays tiny.
TINY_SRGAN = {"n_blocks": 10, "filters": 4, "upsample_filters": 8, "input_kernel": 9, "output_kernel": 9,
              "disc_filters": 4, "disc_dense": 8}


def tiny_srgan_weights(folder: Path, *, name: str = "tiny-srgan", arch: dict | None = None, seed: int = 5,
                       pixel_size_um: float = 0.0385) -> str:
    """Save the weights of a small randomly initialised SRGAN generator with its sidecar record."""
    import keras

    from cathodeflow.models.registry import save_model_weights
    from cathodeflow.models.srgan import SRGANConfig, build_generator

    cfg = SRGANConfig.from_dict(dict(arch or TINY_SRGAN))
    keras.utils.set_random_seed(seed)
    model = build_generator(cfg)
    path = Path(folder) / f"{name}.weights.h5"
    save_model_weights(model, path, architecture={"kind": "srgan", **cfg.to_dict()}, training={"note": "random"},
                       pixel_size_um=pixel_size_um, normalisation={"method": "percentile", "q": [0.5, 99.5]})
    return str(path)
