"""Memory bounded by the chunk, not the image (issue 9): intermediate label arrays of the
tiled path live in an on-disk scratch store, not in the graph or in memory, and the
results stay those of the whole-image computations."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi

from cathodeflow.errors import InputError
from cathodeflow.measure.tiled import describe_phase_dask
from cathodeflow.stages.particles import particle_labels_dask
from cathodeflow.tiling.components import label_components
from cathodeflow.tiling.scratch import Scratch, regular_chunks
from cathodeflow.config import Params

from _geometry import disc

ETA = 0.0143


def _canonical(lab: np.ndarray) -> np.ndarray:
    """Renumber a label image 1..n by the raster order of each label's first pixel."""
    vals, first = np.unique(lab.ravel(), return_index=True)
    keep = vals > 0
    lut = np.zeros(int(vals.max()) + 1, np.int64)
    lut[vals[keep][np.argsort(first[keep], kind="stable")]] = np.arange(1, keep.sum() + 1)
    return lut[lab]


def _largest_graph_array(x: da.Array) -> int:
    """Bytes of the largest numpy array held as a value in the graph of ``x``."""
    def sizes(v):
        if isinstance(v, np.ndarray):
            yield v.nbytes
        elif isinstance(v, (tuple, list)):
            for w in v:
                yield from sizes(w)
    graph = dict(x.__dask_graph__())
    return max([0] + [s for v in graph.values() for s in sizes(v)])


@pytest.fixture
def random_mask():
    rng = np.random.default_rng(3)
    return ndi.binary_opening(rng.random((150, 170)) < 0.55)


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("chunks", [(40, 50), ((30, 50, 70), (60, 10, 100))])
def test_label_components_in_scratch_equals_scipy_label(random_mask, connectivity, chunks):
    """With a scratch store, labels equal scipy's whole-mask labels (canonical numbering)
    for regular and irregular chunks, and keep the chunks of the mask."""
    mask = da.from_array(random_mask, chunks=chunks)
    expected, n_expected = ndi.label(random_mask, ndi.generate_binary_structure(2, connectivity))
    with Scratch() as scratch:
        lab, n = label_components(mask, connectivity=connectivity, scratch=scratch)
        got = lab.compute()
        assert lab.chunks == mask.chunks
    assert n == n_expected
    np.testing.assert_array_equal(got, _canonical(expected))


def test_label_components_in_scratch_keeps_no_label_block_in_the_graph(random_mask):
    """The per-chunk labels are in the store: the graph holds only small lookup tables,
    while the in-memory path holds every labelled block."""
    mask = da.from_array(random_mask, chunks=(50, 85))
    block_bytes = 50 * 85 * 4
    with Scratch() as scratch:
        lab, _ = label_components(mask, scratch=scratch)
        assert _largest_graph_array(lab) < block_bytes // 4
        assert any(p.is_dir() and any(p.iterdir()) for p in scratch.path.iterdir())  # blocks on disk
    lab_mem, _ = label_components(mask)
    assert _largest_graph_array(lab_mem) >= block_bytes


def test_scratch_persist_round_trips_values_and_chunks():
    x = da.from_array(np.arange(35 * 23, dtype=np.int64).reshape(35, 23), chunks=((10, 10, 15), (7, 16)))
    assert not regular_chunks(x.chunks) and regular_chunks(((4, 4, 3), (5,)))
    with Scratch() as scratch:
        (y,) = scratch.persist(x)
        assert y.chunks == x.chunks
        np.testing.assert_array_equal(y.compute(), np.arange(35 * 23).reshape(35, 23))
        assert _largest_graph_array(y) == 0


def test_scratch_close_deletes_its_directory(tmp_path):
    with Scratch(directory=tmp_path) as scratch:
        scratch.persist(da.ones((20, 20), chunks=10))
        assert scratch.path.parent == tmp_path and any(scratch.path.iterdir())
    assert list(tmp_path.iterdir()) == []


def test_scratch_in_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Scratch(directory=tmp_path / "nope")


def _two_touching_discs_and_a_crack(shape=(120, 150)):
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 50, 45, 30)] = 1
    ph[disc(shape, 50, 100, 30)] = 1  # overlaps the first: one component, two markers
    ph[disc(shape, 105, 20, 12)] = 1  # no marker (r = 20 px)
    ph[45:48, 30:110] = np.where(ph[45:48, 30:110] > 0, 2, 0)
    return ph


def test_particle_labels_in_scratch_split_touching_discs_at_their_midline():
    """Two equal discs touching: the flood splits them on the perpendicular bisector
    (column 72/73), the unmarked small disc stays 0; the same with and without scratch."""
    ph = _two_touching_discs_and_a_crack()
    phase = da.from_array(ph, chunks=(37, 41))
    with Scratch() as scratch:
        lab = particle_labels_dask(phase, marker_radius_px=20, scratch=scratch).compute()
    np.testing.assert_array_equal(lab, particle_labels_dask(phase, marker_radius_px=20).compute())
    assert set(np.unique(lab)) == {0, 1, 2}
    assert (lab[ph == 0] == 0).all() and (lab[90:118, 5:35] == 0).all()
    assert (lab[:, :72][lab[:, :72] > 0] == 1).all() and (lab[:, 74:][lab[:, 74:] > 0] == 2).all()


@pytest.mark.filterwarnings("ignore::cathodeflow.errors.PixelSizeWarning")
def test_describe_tiled_with_scratch_equals_in_memory_and_leaves_no_files(tmp_path):
    """Same tables either way; the scratch directory is gone after the call, yet the labels
    kept with ``keep_labels`` still compute (they were moved to memory first)."""
    ph = _two_touching_discs_and_a_crack()
    params = Params(marker_radius_um=20 * ETA)
    kw = dict(image_id="a", condition="c", pixel_size_um=ETA, params=params, keep_labels=True)
    on_disk = describe_phase_dask(da.from_array(ph, chunks=(37, 41)), scratch=tmp_path, **kw)
    assert list(tmp_path.iterdir()) == []
    in_mem = describe_phase_dask(da.from_array(ph, chunks=(37, 41)), scratch=False, **kw)
    for name in ("image", "cracks", "particles"):
        a, b = getattr(on_disk, name), getattr(in_mem, name)
        assert len(a) and a.equals(b), name
    assert len(on_disk.particles) == 2
    for name in ("crack_labels", "particle_labels"):
        np.testing.assert_array_equal(np.asarray(getattr(on_disk, name)), np.asarray(getattr(in_mem, name)))
    assert (np.asarray(on_disk.crack_labels) > 0).sum() == (ph == 2).sum()
