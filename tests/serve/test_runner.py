"""ModelRunner: one model thread, concurrent predict requests batched, results never mixed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pneumoscope.errors import DataError
from pneumoscope.serve.runner import ModelRunner


def grey(make_xray, i: int) -> np.ndarray:
    return make_xray(48 + 4 * i, 200 + i, pneumonia=i % 2 == 1).astype(np.float32) / 255.0


def test_concurrent_requests_are_batched_and_each_gets_its_own_result(predictor, make_xray):
    images = [grey(make_xray, i) for i in range(12)]
    wanted = predictor.predict_arrays(images)
    runner = ModelRunner(predictor, max_batch=8)

    async def main() -> list[dict]:
        return await asyncio.gather(*(runner.predict(image) for image in images))

    try:
        results = asyncio.run(main())
    finally:
        runner.close()
    for got, want in zip(results, wanted, strict=True):
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    assert runner.largest_batch > 1 and runner.largest_batch <= 8
    assert runner.batches < len(images)
    assert runner.served == len(images)


def test_one_bad_image_does_not_fail_its_batch(predictor, make_xray):
    good = [grey(make_xray, i) for i in range(3)]
    bad = np.full((1, 1), 0.5, dtype=np.float32)  # too small to be an image: the Predictor refuses it
    runner = ModelRunner(predictor)

    async def main() -> list:
        return await asyncio.gather(*(runner.predict(image) for image in [good[0], bad, *good[1:]]),
                                    return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        runner.close()
    assert isinstance(results[1], DataError)
    wanted = predictor.predict_arrays(good)
    for got, want in zip([results[0], results[2], results[3]], wanted, strict=True):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
