"""Our compiled perimeter equals scikit-image's (eq. 21 uses scikit-image's value)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import disk
from skimage.measure import perimeter

from cathodeflow.measure.perimeter import perimeter4


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 0.9))
def test_perimeter_is_bit_identical_to_skimage_on_random_masks(seed, p):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, size=2)
    img = rng.random((h, w)) < p
    assert perimeter4(img) == perimeter(img, neighborhood=4)


def test_perimeter_of_a_disc_touching_the_frame_equals_skimage():
    img = np.zeros((120, 90), bool)
    img[disk((60, 10), 40, shape=img.shape)] = True
    assert perimeter4(img) == perimeter(img, neighborhood=4)
    assert perimeter4(np.zeros((5, 5), bool)) == 0.0
