"""Figure of one synthetic sample for the README: images and ground truth side by side.

Run ``python -m cathodeflow.synth.figure [PATH]`` (default ``docs/synthetic_sample.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .study import SyntheticImage, generate_image


def _label_colours(labels: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lut = rng.uniform(0.25, 1.0, size=(int(labels.max()) + 1, 3))
    lut[0] = 0.0
    return lut[labels]


def sample_figure(
    path: str | Path,
    *,
    image: SyntheticImage | None = None,
    condition: str = "50C",
    seed: int = 3,
    zoom_lr: tuple[slice, slice] | None = None,
    dpi: int = 110,
) -> Path:
    """Write a PNG with the high-res image, low-res image, phase map, particle labels and
    crack labels of one synthetic sample (top row: whole field; bottom row: a zoom).

    Parameters
    ----------
    path : output PNG path (parent folders are created).
    image : a sample to show; default ``generate_image(condition, seed=seed)``.
    zoom_lr : region of the low-resolution grid for the bottom row; default: around the
        particle with the most crack pixels.

    Returns
    -------
    Path of the written file.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    im = image if image is not None else generate_image(condition, seed=seed)
    f = im.hr.shape[0] / im.lr.shape[0]
    if zoom_lr is None:
        pt = im.particle_table
        row = pt.loc[pt["crack_px"].idxmax()] if len(pt) else None
        h, w = im.lr.shape
        zh, zw = min(h, 150), min(w, 210)
        # centred half a radius off the particle centre, so the zoom shows its outline too
        off = 0.55 * row["section_radius_um"] / im.pixel_size_lr_um if row is not None else 0
        cy = int(row["y_px"] / f) if row is not None else h // 2
        cx = int(row["x_px"] / f + (off if row is not None and row["x_px"] / f < w / 2 else -off)) \
            if row is not None else w // 2
        y0 = int(np.clip(cy - zh // 2, 0, h - zh))
        x0 = int(np.clip(cx - zw // 2, 0, w - zw))
        zoom_lr = (slice(y0, y0 + zh), slice(x0, x0 + zw))
    zs_hr = tuple(slice(int(round(s.start * f)), int(round(s.stop * f))) for s in zoom_lr)

    phase_rgb = np.array([[0.0, 0.0, 0.0], [0.55, 0.55, 0.55], [1.0, 0.85, 0.1]])[im.phase]
    crack_rgb = np.where(im.phase[..., None] == 1, 0.35, 0.0) + 0 * phase_rgb
    cr = _label_colours(im.cracks, seed=7)
    crack_rgb = np.where(im.cracks[..., None] > 0, cr, crack_rgb)
    panels = [
        ("high-res SEM (14.3 nm/px)", im.hr, True, zs_hr),
        ("low-res SEM (38.5 nm/px)", im.lr, True, zoom_lr),
        ("phase: bg / solid / crack", phase_rgb, False, zs_hr),
        ("particle labels", _label_colours(im.particles), False, zs_hr),
        ("crack labels", crack_rgb, False, zs_hr),
    ]
    fig, axes = plt.subplots(2, 5, figsize=(22, 7.6))
    for k, (title, arr, grey, zs) in enumerate(panels):
        for r, a in enumerate((arr, arr[zs])):
            ax = axes[r, k]
            if grey:
                ax.imshow(a, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(a, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=11)
        # zoom rectangle on the top row
        ys, xs = zs
        axes[0, k].add_patch(
            plt.Rectangle((xs.start, ys.start), xs.stop - xs.start, ys.stop - ys.start,
                          fill=False, ec="c", lw=1.2)
        )
    p = im.params
    fig.suptitle(
        f"synthetic {im.image_id}: {p['n_particles']} particles, porosity "
        f"{p['porosity_true']:.3f}, {p['n_cracks_true']} cracks "
        f"({p['crack_intensity_true_per_um2']:.2f} per µm² of particle); field "
        f"{im.hr.shape[1] * im.pixel_size_hr_um:.1f} × {im.hr.shape[0] * im.pixel_size_hr_um:.1f} µm",
        fontsize=12,
    )
    return save_figure(fig, path, dpi=dpi)


def save_figure(fig, path, *, dpi) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


if __name__ == "__main__":  # pragma: no cover
    print(sample_figure(sys.argv[1] if len(sys.argv) > 1 else "docs/synthetic_sample.png"))
