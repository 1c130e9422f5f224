"""Small U-net weights files for tests (random weights: the tests check plumbing and
tiling, not segmentation quality)."""

from pathlib import Path

TINY_ARCH = {"depth": 3, "filters": 4, "dilation": 2, "kernel_size": 3, "convs_per_level": 2, "n_classes": 3}


def tiny_weights(folder: Path, *, name: str = "tiny", arch: dict | None = None, seed: int = 3,
                 crack_threshold: float = 0.4, pixel_size_um: float = 0.0143) -> str:
    """Save the weights of a small randomly initialised U-net with its sidecar record."""
    import keras

    from cathodeflow.models.registry import save_model_weights
    from cathodeflow.models.unet import UNetConfig, build_unet

    arch = dict(arch or TINY_ARCH)
    keras.utils.set_random_seed(seed)
    model = build_unet(UNetConfig.from_dict(arch))
    path = Path(folder) / f"{name}.weights.h5"
    save_model_weights(model, path, architecture={"kind": "unet", **arch}, training={"note": "random"},
                       pixel_size_um=pixel_size_um, crack_threshold=crack_threshold,
                       normalisation={"method": "percentile", "q": [0.5, 99.5]})
    return str(path)
