"""Fig. 7 drawn from fixed data is compared with a stored reference image (a regression
snapshot of the whole figure: layout, axes, scales, labels), within a small RMS tolerance.

Regenerate the reference deliberately after an intended change of the figure's look:
``python tests/test_figure_reference.py`` (then look at it before committing)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE = Path(__file__).parent / "data" / "crack_boxplots_reference.png"
DPI = 40  # small file; enough to see a moved box, whisker or label
TOLERANCE = 6.0  # RMS of the 0-255 grey difference (matplotlib.testing.compare)


def _cracks() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for k, cond in enumerate(("20C", "30C", "40C", "50C")):
        n = 40 + 10 * k
        d = rng.lognormal(-1.5 + 0.1 * k, 0.5, n)
        rows.append(pd.DataFrame({
            "image_id": [f"{cond}_{i % 3}" for i in range(n)], "condition": cond, "crack_id": np.arange(n),
            "d_um": d, "length_um": 1.8 * d * rng.uniform(0.8, 1.2, n), "width_um": 0.2 * d,
            "kept": d > 0.1, "adjusted": d > 0.15,
        }))
    return pd.concat(rows, ignore_index=True)


def _draw(path: Path) -> Path:
    import matplotlib

    matplotlib.rcParams.update(matplotlib.rcParamsDefault)
    from cathodeflow.report.figures import crack_boxplots_figure

    fig = crack_boxplots_figure(_cracks(), ["20C", "30C", "40C", "50C"])
    fig.savefig(path, dpi=DPI)
    return path


def test_fig7_drawn_from_fixed_data_matches_the_stored_reference_image(tmp_path):
    from matplotlib.testing.compare import compare_images

    got = _draw(tmp_path / "fig7.png")
    result = compare_images(str(REFERENCE), str(got), tol=TOLERANCE)
    assert result is None, result


def test_the_comparison_fails_when_one_box_moves(tmp_path):
    from matplotlib.testing.compare import compare_images

    from cathodeflow.report.figures import crack_boxplots_figure

    cracks = _cracks()
    cracks.loc[cracks["condition"] == "30C", ["d_um", "length_um", "width_um"]] *= 1.6
    fig = crack_boxplots_figure(cracks, ["20C", "30C", "40C", "50C"])
    fig.savefig(tmp_path / "moved.png", dpi=DPI)
    assert compare_images(str(REFERENCE), str(tmp_path / "moved.png"), tol=TOLERANCE) is not None


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    print(_draw(REFERENCE), file=sys.stderr)
