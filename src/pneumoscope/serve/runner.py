"""Runs the model off the event loop, in one dedicated thread, batching predict requests that arrive together.

One thread owns the model, so that nothing needs to be thread-safe: Grad-CAM's hooks on the network never see
another request's forward pass, and results cannot be mixed. Requests that queue up while the model is busy
are predicted together in one ``predict_arrays`` call (same order in, same order out), which keeps throughput
up under load without a fixed batching delay.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pneumoscope.serve.uploads import ServeError


@dataclass
class _Job:
    image: Any  # a decoded image as predict_arrays takes it
    tta: int
    future: asyncio.Future = field(repr=False)


class ModelRunner:
    """Serialises every call on ``predictor`` through one worker thread; see the module docstring."""

    def __init__(self, predictor: Any, max_batch: int = 16, max_queue: int = 256):
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.served = 0
        self.batches = 0
        self.largest_batch = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pneumoscope-model")
        self._queue: asyncio.Queue[_Job] | None = None
        self._loop_task: asyncio.Task | None = None
        self._start_lock = threading.Lock()

    @property
    def queue_length(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def _ensure_started(self) -> asyncio.Queue[_Job]:
        with self._start_lock:
            loop = asyncio.get_running_loop()
            task = self._loop_task
            if self._queue is None or task is None or task.done() or task.get_loop() is not loop:
                self._queue = asyncio.Queue()
                self._loop_task = loop.create_task(self._batch_loop())
            return self._queue

    async def predict(self, image: Any, tta: int = 0) -> dict:
        """The prediction dict of ``predictor.predict_arrays`` for one image."""
        queue = self._ensure_started()
        if queue.qsize() >= self.max_queue:
            raise ServeError(503, "busy", "the server is busy (queue full). Fix: retry in a moment.",
                             headers={"Retry-After": "1"})
        job = _Job(image, tta, asyncio.get_running_loop().create_future())
        queue.put_nowait(job)
        return await job.future

    async def explain(self, image: Any, method: str, target_class: str | None) -> dict:
        """``predictor.explain_array`` in the model thread."""
        loop = asyncio.get_running_loop()
        explain = self.predictor.explain_array
        result = await loop.run_in_executor(
            self._executor, lambda: explain(image, method=method, target_class=target_class))
        self.served += 1
        return result

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            jobs = [job for job in jobs if not job.future.done()]  # the client went away
            for tta in sorted({job.tta for job in jobs}):
                await self._run_group([job for job in jobs if job.tta == tta], tta)

    async def _run_group(self, jobs: list[_Job], tta: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._predict, [j.image for j in jobs], tta)
        except Exception as error:  # noqa: BLE001 - isolate the bad image below
            if len(jobs) == 1:
                _settle(jobs[0].future, error=error)
                return
            for job in jobs:  # one bad image must not fail the others of its batch
                await self._run_group([job], tta)
            return
        for job, result in zip(jobs, results, strict=True):
            _settle(job.future, result=result)

    def _predict(self, images: list[Any], tta: int) -> list[dict]:
        results = self.predictor.predict_arrays(images, tta=tta)
        if len(results) != len(images):
            raise RuntimeError(f"predict_arrays returned {len(results)} results for {len(images)} images")
        self.served += len(images)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(images))
        return results

    def close(self) -> None:
        """Stop the batching task and the model thread."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
