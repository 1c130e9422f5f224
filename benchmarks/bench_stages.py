"""The two segmentation stages alone, on the same phase map as :mod:`.bench_describe`.

- crack-wise segmentation (eq. 2): ``crack_labels`` (component crops, k-d tree) against
  ``crack_labels_reference`` (whole-image Lee skeleton, scipy EDT with indices);
- particle-wise segmentation (eq. 8–10): ``particle_labels`` (per-component integer EDT and
  bucket-queue flood, numba) against ``watershed_reference`` (scipy EDT + scikit-image
  watershed).
"""

from __future__ import annotations

from .bench_describe import bench_phase, particle_pixel_differences
from .serial_reference import _canonical_particles


class Stages:
    """crack_labels vs crack_labels_reference, particle_labels vs watershed_reference."""

    repeat = 3
    timeout = 1800
    ratios = {
        "crack_labels_reference / crack_labels": ("time_crack_labels_reference", "time_crack_labels"),
        "watershed_reference / particle_labels": ("time_watershed_reference", "time_particle_labels"),
    }

    def setup(self):
        self.phase = bench_phase()
        self.out = {}

    def time_crack_labels(self):
        from cathodeflow.stages.cracks import crack_labels

        self.out["crack"] = crack_labels(self.phase)

    def time_crack_labels_reference(self):
        from cathodeflow.stages.cracks import crack_labels_reference

        self.out["crack_ref"] = crack_labels_reference(self.phase)

    time_crack_labels_reference.warmup = False

    def time_particle_labels(self):
        from cathodeflow.stages.particles import particle_labels

        self.out["particle"] = particle_labels(self.phase)

    def time_watershed_reference(self):
        from cathodeflow.stages.particles import watershed_reference

        self.out["particle_ref"] = watershed_reference(self.phase)

    time_watershed_reference.warmup = False

    def info(self) -> dict:
        info = {}
        if "crack" in self.out and "crack_ref" in self.out:
            a, b = self.out["crack_ref"], self.out["crack"]
            crack = self.phase == 2
            info["cracks"] = {
                "n_reference": int(a.n_cracks),
                "n_ours": int(b.n_cracks),
                "differing_crack_pixels": int((crack & (a.labels != b.labels)).sum()),
                "skeleton_identical": bool(
                    a.skeleton.rc.shape == b.skeleton.rc.shape and (a.skeleton.rc == b.skeleton.rc).all()
                ),
            }
        if "particle" in self.out and "particle_ref" in self.out:
            ref, _ = _canonical_particles(self.out["particle_ref"])
            ours = self.out["particle"]
            info["particles"] = {
                "n_reference": int(ref.max()),
                "n_ours": int(ours.max()),
                **particle_pixel_differences(ref, ours),
            }
        return info

    @staticmethod
    def summarize(info: dict) -> list[str]:
        lines = []
        c = info.get("cracks")
        if c:
            lines.append(
                f"  cracks: {c['n_reference']} (reference) vs {c['n_ours']}; {c['differing_crack_pixels']} crack px "
                f"on another curve (scipy's EDT tie order vs the raster rule); skeleton identical: {c['skeleton_identical']}"
            )
        p = info.get("particles")
        if p:
            lines.append(
                f"  particles: {p['n_reference']} (reference) vs {p['n_ours']}; {p['pixels']} px differ "
                f"({p['fraction_of_B']:.2e} of B, {p['on_shared_boundary']} on a shared boundary)"
            )
        return lines
