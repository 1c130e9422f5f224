"""Cracks inside the particle sections: centrelines, widths, rasterisation, labels.

Two kinds of crack, both drawn as centrelines (polylines, pixel units of the high-resolution
grid) with a local half-width:

* ``radial``: a star of 2–6 curved arms from near the section centre, each arm a persistent
  random walk outward, some with a side branch (one crack: the arms are connected).
* ``intergranular``: a walk along the edges of the grain tessellation (the Voronoi diagram
  of the grain seeds also used for the grain texture), i.e. along grain boundaries, lightly
  smoothed.
* ``void``: a short, wider opening at a grain triple junction (what a segmentation of a real
  image also counts as a small crack).

Radial profile: with u = d/r the exact 3D relative distance of a point to the centre of its
sphere, the weight g(u) = exp(−κ (u − 0.6)) sets where intergranular cracks start (∝ g),
how many a particle gets (∝ its mean g), and the local half-width (∝ g^γ). So κ > 0 puts more
crack area near the 3D particle centre (paper §3, Fig. 9); κ = 0 makes cracks uniform.

Amount: the number of cracks is round(λ·A) (λ the crack intensity, A the particle area, eq.
12); the crack area is then set to round(ρ·A) pixels (ρ the porosity, eq. 11) by scaling all
half-widths with one factor t (solved exactly by sorting; DESIGN: "width_scale"). A pixel is
crack when its distance to a centreline segment is ≤ max(min(t·hw, cap), floor) (floor = 0.56
px keeps every crack 8-connected; cap limits widths to ~6 px), and only inside the crack's own
particle. Distinct cracks keep a gap of ``gap_px`` between their footprints, so each crack is
one 8-connected component; an intergranular walk that runs into a radial crack of its particle
may instead join it (crack networks around the core).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

#: Distance (px) under which a pixel centre always belongs to a crack's centreline.
FLOOR_PX = 0.56
#: Width scale assumed when keeping distinct cracks apart (footprint = T_GAP·hw + gap/2).
T_GAP = 1.5
#: Largest width scale the porosity solve may use.
T_MAX = 2.0

KIND_RADIAL, KIND_INTERGRANULAR, KIND_VOID = 0, 1, 2
KIND_NAMES = ("radial", "intergranular", "void")


def g_profile(u: np.ndarray | float, kappa: float) -> np.ndarray:
    """Radial weight g(u) = exp(−κ (u − 0.6)) of the crack model (1 at u = 0.6)."""
    return np.exp(-kappa * (np.asarray(u, dtype=np.float64) - 0.6))


@dataclass
class CrackParams:
    """Shape parameters of the crack model (pixel units of the high-resolution grid)."""

    hw_px: float  # median base half-width
    hw_log_sd: float = 0.35
    gamma: float = 0.5  # half-width ∝ g(u)^γ
    kappa: float = 1.2
    star_probability: float = 0.6
    branch_probability: float = 0.5
    curvature_rad_per_px: float = 0.03
    length_log_sd: float = 0.8
    taper_px: float = 6.0
    gap_px: float = 2.0
    min_crack_px: int = 5
    hw_cap_px: float = 3.15  # largest half-width (crack widths up to ~6 px)
    join_probability: float = 0.7


@dataclass
class Centrelines:
    """Accepted cracks as arms (polylines with half-widths)."""

    arms_yx: list = field(default_factory=list)  # (n, 2) float64 arrays
    arms_hw: list = field(default_factory=list)  # (n,) float64 arrays
    arms_crack: list = field(default_factory=list)  # crack index per arm
    crack_pid: list = field(default_factory=list)  # particle label per crack
    crack_kind: list = field(default_factory=list)
    crack_length_px: list = field(default_factory=list)
    crack_area_px: list = field(default_factory=list)  # nominal: Σ 2·hw·step at t = 1

    @property
    def n(self) -> int:
        return len(self.crack_pid)


_STENCILS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _disc(R: int) -> tuple[np.ndarray, np.ndarray]:
    if R not in _STENCILS:
        dy, dx = np.mgrid[-R : R + 1, -R : R + 1]
        keep = dy * dy + dx * dx <= R * R + R  # a touch generous: conservative footprint
        _STENCILS[R] = (dy[keep].ravel(), dx[keep].ravel())
    return _STENCILS[R]


def _smooth(yx: np.ndarray, half: int = 2) -> np.ndarray:
    """Moving average over 2·half + 1 samples, end points kept."""
    if len(yx) < 2 * half + 2:
        return yx
    k = np.ones(2 * half + 1) / (2 * half + 1)
    pad = np.pad(yx, ((half, half), (0, 0)), mode="edge")
    out = np.column_stack([np.convolve(pad[:, 0], k, "valid"), np.convolve(pad[:, 1], k, "valid")])
    out[0], out[-1] = yx[0], yx[-1]
    return out


def _densify(v: np.ndarray, step: float = 1.0) -> np.ndarray:
    seg = np.sqrt(np.sum(np.diff(v, axis=0) ** 2, axis=1))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    if total <= 0:
        return v[:1].copy()
    n = max(1, int(np.ceil(total / step)))
    s = np.linspace(0.0, total, n + 1)
    return np.column_stack([np.interp(s, cum, v[:, 0]), np.interp(s, cum, v[:, 1])])


class CrackBuilder:
    """Places cracks one by one, keeping them inside their particle and apart (or joined)."""

    def __init__(self, rng, labels, *, cy, cx, s, r, h, graph, params: CrackParams):
        self.slices = ndi.find_objects(labels)
        self.rng = rng
        self.labels = labels
        self.H, self.W = labels.shape
        self.occ = np.zeros(labels.shape, dtype=np.int32)
        self.cy, self.cx, self.s, self.r, self.h = cy, cx, s, r, h  # indexed by label - 1
        self.p = params
        self.out = Centrelines()
        self.n_joined = 0
        self._arms_of: list[list[int]] = []
        self.graph = graph  # (vy, vx, vlabel, indptr, indices) of the grain tessellation
        vy, vx, vlab = graph[0], graph[1], graph[2]
        self.vg = np.zeros(len(vy))
        on = vlab > 0
        li = vlab[on] - 1
        d2 = (vy[on] - cy[li]) ** 2 + (vx[on] - cx[li]) ** 2
        self.vg[on] = g_profile(np.sqrt(d2 + h[li] ** 2) / r[li], params.kappa)
        order = np.argsort(vlab, kind="stable")
        bounds = np.searchsorted(vlab[order], np.arange(len(cy) + 2))
        self._verts_of = [order[bounds[k] : bounds[k + 1]] for k in range(len(cy) + 1)]

    # -- geometry helpers ------------------------------------------------------------
    def u_of(self, pid: int, yx: np.ndarray) -> np.ndarray:
        i = pid - 1
        d2 = (yx[:, 0] - self.cy[i]) ** 2 + (yx[:, 1] - self.cx[i]) ** 2
        return np.sqrt(d2 + self.h[i] ** 2) / self.r[i]

    def hw_of(self, pid: int, yx: np.ndarray, base: float) -> np.ndarray:
        return base * g_profile(self.u_of(pid, yx), self.p.kappa) ** self.p.gamma

    def _radius(self, hw: np.ndarray) -> np.ndarray:
        """Footprint radius (px) kept free of other cracks around a centreline sample."""
        return np.ceil(np.minimum(T_GAP * hw, self.p.hw_cap_px) + 0.5 * self.p.gap_px).astype(int)

    def _hits(self, yx: np.ndarray, hw: np.ndarray) -> np.ndarray:
        """Per sample: id of another crack whose footprint its footprint touches (0: none)."""
        R = self._radius(hw)
        iy = np.rint(yx[:, 0]).astype(int)
        ix = np.rint(yx[:, 1]).astype(int)
        hit = np.zeros(len(yx), dtype=np.int32)
        for Rv in np.unique(R):
            sel = np.flatnonzero(R == Rv)
            dy, dx = _disc(int(Rv))
            py = np.clip(iy[sel, None] + dy[None, :], 0, self.H - 1)
            px = np.clip(ix[sel, None] + dx[None, :], 0, self.W - 1)
            hit[sel] = self.occ[py, px].max(axis=1)
        return hit

    def valid_prefix(self, pid: int, yx: np.ndarray, hw: np.ndarray) -> tuple[int, int]:
        """Leading run of samples inside particle ``pid`` and clear of other cracks.

        Returns (k, hit): the run is ``yx[:k]``; ``hit`` is the id of the crack that stopped
        it (0 if it stopped at the particle's outline or ran to its end).
        """
        iy = np.rint(yx[:, 0]).astype(int)
        ix = np.rint(yx[:, 1]).astype(int)
        inside = (iy >= 0) & (iy < self.H) & (ix >= 0) & (ix < self.W)
        ok = inside.copy()
        ok[inside] = self.labels[iy[inside], ix[inside]] == pid
        hits = np.zeros(len(yx), dtype=np.int32)
        hits[ok] = self._hits(yx[ok], hw[ok])
        ok &= hits == 0
        bad = np.flatnonzero(~ok)
        if len(bad) == 0:
            return len(yx), 0
        return int(bad[0]), int(hits[bad[0]])

    def _stamp(self, yx: np.ndarray, hw: np.ndarray, cid: int) -> None:
        R = self._radius(hw)
        iy = np.rint(yx[:, 0]).astype(int)
        ix = np.rint(yx[:, 1]).astype(int)
        for Rv in np.unique(R):
            sel = np.flatnonzero(R == Rv)
            dy, dx = _disc(int(Rv))
            py = (iy[sel, None] + dy[None, :]).ravel()
            px = (ix[sel, None] + dx[None, :]).ravel()
            m = (py >= 0) & (py < self.H) & (px >= 0) & (px < self.W)
            self.occ[py[m], px[m]] = cid

    def _taper(self, n: int, both: bool) -> np.ndarray:
        idx = np.arange(n, dtype=float)
        to_end = (n - 1) - idx
        if both:
            to_end = np.minimum(to_end, idx)
        return np.sqrt(np.clip((to_end + 1.0) / self.p.taper_px, 0.0, 1.0))

    def _walk(self, y, x, theta, length):
        n = max(1, int(length))
        th = theta + np.cumsum(self.rng.normal(0.0, self.p.curvature_rad_per_px, n))
        yx = np.empty((n + 1, 2))
        yx[0] = (y, x)
        yx[1:, 0] = y + np.cumsum(np.sin(th))
        yx[1:, 1] = x + np.cumsum(np.cos(th))
        return yx, th

    def _accept(self, pid, kind, arms, cid: int | None = None):
        """Store ``arms`` as a new crack, or (``cid`` given) as more arms of crack ``cid``."""
        new = cid is None
        if new:
            cid = self.out.n + 1
            self._arms_of.append([])
            self.out.crack_pid.append(pid)
            self.out.crack_kind.append(kind)
            self.out.crack_length_px.append(0.0)
            self.out.crack_area_px.append(0.0)
        for yx, hw in arms:
            self._arms_of[cid - 1].append(len(self.out.arms_yx))
            self.out.arms_yx.append(yx)
            self.out.arms_hw.append(hw)
            self.out.arms_crack.append(cid - 1)
            self._stamp(yx, hw, cid)
            self.out.crack_length_px[cid - 1] += max(0, len(yx) - 1)
            self.out.crack_area_px[cid - 1] += float(
                np.sum(np.clip(2.0 * hw, 2 * FLOOR_PX, 2 * self.p.hw_cap_px))
            )

    def _join(self, pid: int, yx: np.ndarray, hw: np.ndarray, cid: int) -> None:
        """Attach the run ``yx`` to crack ``cid`` by a straight piece to its nearest sample."""
        pts = np.concatenate([self.out.arms_yx[a] for a in self._arms_of[cid - 1]])
        d2 = np.sum((pts - yx[-1]) ** 2, axis=1)
        link = _densify(np.vstack([yx[-1], pts[int(np.argmin(d2))]]))[1:]
        yx = np.vstack([yx, link])
        hw = np.concatenate([hw, np.full(len(link), hw[-1])])
        self._accept(pid, KIND_INTERGRANULAR, [(yx, hw)], cid=cid)
        self.n_joined += 1

    # -- the kinds -------------------------------------------------------------------
    def add_star(self, pid: int) -> bool:
        """A radial star of arms from near the centre of section ``pid``."""
        i = pid - 1
        rng, p = self.rng, self.p
        y0 = self.cy[i] + rng.normal(0, 0.06 * self.s[i])
        x0 = self.cx[i] + rng.normal(0, 0.06 * self.s[i])
        if self.valid_prefix(pid, np.array([[y0, x0]]), np.array([p.hw_px]))[0] == 0:
            return False
        base = p.hw_px * np.exp(rng.normal(0, p.hw_log_sd))
        n_arms = 2 + min(int(rng.poisson(1.5)), 5)
        th0 = rng.uniform(0, 2 * np.pi)
        arms = []
        for a in range(n_arms):
            theta = th0 + 2 * np.pi * a / n_arms + rng.normal(0, 0.35)
            L = self.s[i] * rng.uniform(0.5, 1.0)
            yx, th = self._walk(y0, x0, theta, L)
            hw = self.hw_of(pid, yx, base)
            k, _ = self.valid_prefix(pid, yx, hw)
            if k < 4:
                continue
            yx, th = yx[:k], th[: max(k - 1, 1)]
            arms.append((yx, hw[:k] * self._taper(k, both=False)))
            for _b in range(2):
                if rng.random() >= p.branch_probability or k <= 12:
                    break
                j = int(k * rng.uniform(0.25, 0.75))
                bth = th[min(j, len(th) - 1)] + rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 1.0)
                byx, _ = self._walk(yx[j, 0], yx[j, 1], bth, (k - j) * rng.uniform(0.4, 0.9))
                bhw = self.hw_of(pid, byx, base * 0.8)
                bk, _ = self.valid_prefix(pid, byx, bhw)
                if bk >= 4:
                    arms.append((byx[:bk], bhw[:bk] * self._taper(bk, both=False)))
        if not arms:
            return False
        self._accept(pid, KIND_RADIAL, arms)
        return True

    def add_intergranular(self, pid: int, length_px: float, tries: int = 4) -> str | None:
        """A crack along grain boundaries of section ``pid``, about ``length_px`` long.

        A walk that runs into a radial crack of the same particle joins it with probability
        ``join_probability`` (crack networks around the core). Returns ``'new'``,
        ``'joined'`` or None (nothing placed).
        """
        rng, p = self.rng, self.p
        vy, vx, vlab, indptr, indices = self.graph
        cand = self._verts_of[pid]
        vg = self.vg
        for _ in range(tries):
            if len(cand) >= 2:
                w = vg[cand]
                v = int(cand[rng.choice(len(cand), p=w / w.sum())])
                verts = [v]
                seen = {v}
                prev_dir = None
                total = 0.0
                while total < length_px:
                    nb = indices[indptr[v] : indptr[v + 1]]
                    nb = np.array([q for q in nb if vlab[q] == pid and q not in seen], dtype=int)
                    if len(nb) == 0:
                        break
                    d = np.column_stack([vy[nb] - vy[v], vx[nb] - vx[v]])
                    ln = np.sqrt(np.sum(d**2, axis=1)) + 1e-9
                    wt = vg[nb]
                    if prev_dir is not None:
                        wt = wt * np.exp(3.0 * (d @ prev_dir) / ln)
                    q = int(nb[rng.choice(len(nb), p=wt / wt.sum())])
                    k = int(np.flatnonzero(nb == q)[0])
                    prev_dir = d[k] / ln[k]
                    total += ln[k]
                    verts.append(q)
                    seen.add(q)
                    v = q
                if len(verts) < 2:
                    continue
                yx = _smooth(_densify(np.column_stack([vy[verts], vx[verts]]).astype(float)))
                if len(yx) > length_px + 1:
                    yx = yx[: int(length_px) + 1]
            else:
                # tiny section without grain-boundary vertices: a short curved walk
                i = pid - 1
                sl = self.slices[i] if i < len(self.slices) else None
                if sl is None:
                    return None
                ys, xs = np.nonzero(self.labels[sl] == pid)
                j = rng.integers(len(ys))
                yx, _ = self._walk(float(ys[j] + sl[0].start), float(xs[j] + sl[1].start),
                                   rng.uniform(0, 2 * np.pi), min(length_px, 2 * self.s[i]))
            base = p.hw_px * np.exp(rng.normal(0, p.hw_log_sd))
            hw = self.hw_of(pid, yx, base)
            k, hit = self.valid_prefix(pid, yx, hw)
            if (
                hit
                and k >= 2
                and self.out.crack_kind[hit - 1] == KIND_RADIAL
                and self.out.crack_pid[hit - 1] == pid
                and rng.random() < p.join_probability
            ):
                self._join(pid, yx[:k], hw[:k] * self._taper(k, both=False)[::-1], hit)
                return "joined"
            if k < 4:
                continue
            yx, hw = yx[:k], hw[:k] * self._taper(k, both=True)
            self._accept(pid, KIND_INTERGRANULAR, [(yx, hw)])
            return "new"
        return None

    def add_void(self, pid: int, tries: int = 4) -> bool:
        """A short, wide opening at a grain triple junction of section ``pid``."""
        rng, p = self.rng, self.p
        vy, vx = self.graph[0], self.graph[1]
        cand = self._verts_of[pid]
        if len(cand) == 0:
            return False
        w = self.vg[cand]
        for _ in range(tries):
            v = int(cand[rng.choice(len(cand), p=w / w.sum())])
            yx, _ = self._walk(vy[v], vx[v], rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 5.0))
            base = p.hw_px * np.exp(rng.normal(0, p.hw_log_sd)) * 1.6
            hw = self.hw_of(pid, yx, base)
            k, _ = self.valid_prefix(pid, yx, hw)
            if k < 2:
                continue
            self._accept(pid, KIND_VOID, [(yx[:k], hw[:k])])
            return True
        return False


def rasterize_cracks(
    lines: Centrelines,
    labels: np.ndarray,
    *,
    target_px: int,
    floor_px: float = FLOOR_PX,
    t_max: float = T_MAX,
    hw_cap_px: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Crack pixels with exactly ``target_px`` pixels where possible (one width scale t).

    Parameters
    ----------
    lines : accepted centrelines (pixel units).
    labels : (H, W) int — particle labels; a crack only takes pixels of its own particle.
    target_px : wanted number of crack pixels.
    hw_cap_px : no pixel farther than this from a centreline is crack (caps the width).

    Returns
    -------
    crack_of : (H, W) int32 — 1 + crack index of each crack pixel, 0 elsewhere.
    tmin : (H, W) float32 — the smallest width scale at which the pixel becomes crack
        (inf where it never does); crack pixels are ``tmin <= t``.
    t : float — the width scale used.
    """
    H, W = labels.shape
    tmin = np.full(H * W, np.inf, dtype=np.float32)
    crack_of = np.zeros(H * W, dtype=np.int32)
    if lines.n == 0:
        return crack_of.reshape(H, W), tmin.reshape(H, W), 1.0
    # segments
    P0, P1, W0, W1, C = [], [], [], [], []
    for yx, hw, c in zip(lines.arms_yx, lines.arms_hw, lines.arms_crack):
        if len(yx) == 1:
            yx = np.vstack([yx, yx])
            hw = np.concatenate([hw, hw])
        P0.append(yx[:-1])
        P1.append(yx[1:])
        W0.append(hw[:-1])
        W1.append(hw[1:])
        C.append(np.full(len(yx) - 1, c))
    P0, P1 = np.concatenate(P0), np.concatenate(P1)
    W0, W1, C = np.concatenate(W0), np.concatenate(W1), np.concatenate(C)
    pid_of_crack = np.asarray(lines.crack_pid, dtype=np.int32)
    D = P1 - P0
    L2 = np.maximum(np.sum(D * D, axis=1), 1e-12)
    mid = 0.5 * (P0 + P1)
    reach = (
        np.maximum(np.minimum(t_max * np.maximum(W0, W1), hw_cap_px), floor_px)
        + 0.5 * np.sqrt(L2)
        + 0.5
    )
    R = np.ceil(reach).astype(int)
    flat_all, t_all, c_all = [], [], []
    for Rv in np.unique(R):
        sel = np.flatnonzero(R == Rv)
        oy, ox = np.mgrid[-Rv : Rv + 1, -Rv : Rv + 1]
        oy, ox = oy.ravel(), ox.ravel()
        py = np.rint(mid[sel, 0])[:, None].astype(np.int64) + oy[None, :]
        px = np.rint(mid[sel, 1])[:, None].astype(np.int64) + ox[None, :]
        ry = py - P0[sel, 0:1]
        rx = px - P0[sel, 1:2]
        tau = np.clip((ry * D[sel, 0:1] + rx * D[sel, 1:2]) / L2[sel, None], 0.0, 1.0)
        ey = ry - tau * D[sel, 0:1]
        ex = rx - tau * D[sel, 1:2]
        dist = np.sqrt(ey * ey + ex * ex)
        hw = W0[sel, None] + tau * (W1[sel, None] - W0[sel, None])
        tstar = np.where(dist <= floor_px, 0.0, dist / np.maximum(hw, 1e-9))
        tstar = np.where((dist > hw_cap_px) & (dist > floor_px), np.inf, tstar)
        inb = (py >= 0) & (py < H) & (px >= 0) & (px < W) & (tstar <= t_max)
        cc = np.broadcast_to(C[sel, None], py.shape)
        py, px, tstar, cc = py[inb], px[inb], tstar[inb], cc[inb]
        own = labels[py, px] == pid_of_crack[cc]
        flat_all.append((py * W + px)[own])
        t_all.append(tstar[own].astype(np.float32))
        c_all.append(cc[own])
    flat = np.concatenate(flat_all)
    tt = np.concatenate(t_all)
    cc = np.concatenate(c_all).astype(np.int32)
    np.minimum.at(tmin, flat, tt)
    win = tt == tmin[flat]
    crack_of[flat[win]] = cc[win] + 1
    cand = np.flatnonzero(np.isfinite(tmin))
    tv = tmin[cand]
    if target_px <= 0:
        t = -1.0
    elif target_px >= len(tv):
        t = t_max
    else:
        t = float(np.partition(tv, target_px - 1)[target_px - 1])
    crack_of[tmin > t] = 0
    return crack_of.reshape(H, W), tmin.reshape(H, W), t


def label_cracks(
    crack_mask: np.ndarray, labels: np.ndarray, *, min_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crack instances: 8-connected components of the crack phase, split by particle.

    Components smaller than ``min_px`` pixels are dropped (returned mask excludes them).

    Returns
    -------
    crack_labels : (H, W) uint32 — ids 1..n in raster order of first pixel, 0 elsewhere.
    pid : (n,) int — particle label of each crack.
    """
    comp, n = ndi.label(crack_mask, structure=np.ones((3, 3), dtype=bool))
    out = np.zeros(crack_mask.shape, dtype=np.uint32)
    if n == 0:
        return out, np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(comp.ravel())
    key = comp.ravel()[idx].astype(np.int64) * (int(labels.max()) + 1) + labels.ravel()[idx]
    uniq, first, inv, counts = np.unique(key, return_index=True, return_inverse=True,
                                         return_counts=True)
    keep = counts >= min_px
    order = np.argsort(first, kind="stable")  # raster order of first pixel
    new = np.zeros(len(uniq), dtype=np.uint32)
    kept_sorted = order[keep[order]]
    new[kept_sorted] = np.arange(1, len(kept_sorted) + 1, dtype=np.uint32)
    out.ravel()[idx] = new[inv]
    pid = (uniq[kept_sorted] % (int(labels.max()) + 1)).astype(np.int64)
    return out, pid
