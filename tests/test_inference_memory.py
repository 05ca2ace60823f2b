"""A forward pass too large for the GPU ends with the view count that fits, not a traceback."""

from __future__ import annotations

from ff3r_ns.ns.errors import USER_ERRORS, InferenceOutOfMemory, inference_memory_advice, views_that_fit

GIB = 2**30


def test_views_that_fit_is_linear_on_top_of_the_weights():
    # 256 views needed more than 100 GiB on top of 4 GiB of weights; 80 GiB hold (80 - 4) / (100 - 4) of them.
    assert views_that_fit(256, 4 * GIB, 100 * GIB, 80 * GIB) == int(256 * 76 / 96)
    assert views_that_fit(0, 4 * GIB, 100 * GIB, 80 * GIB) is None
    assert views_that_fit(8, 4 * GIB, 4 * GIB, 80 * GIB) is None


def test_advice_names_a_view_count_below_the_failed_one_and_the_flag():
    advice = inference_memory_advice(256, 4 * GIB, 100 * GIB, 80 * GIB)
    fit = int(0.9 * int(256 * 76 / 96))
    assert f"About {fit} views fit: --pipeline.max-views {fit}" in advice
    assert "256 views" in advice and "80.0 GiB" in advice
    # Weights alone nearly fill the card (4 views need 6 GiB, 1 GiB is free): no view count helps, the message
    # says what does.
    hopeless = inference_memory_advice(4, 79 * GIB, 85 * GIB, 80 * GIB)
    assert "max-views" not in hopeless and "image-long-side" in hopeless


def test_the_error_is_a_user_error():
    assert issubclass(InferenceOutOfMemory, USER_ERRORS)
