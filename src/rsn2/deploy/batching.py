"""Dynamic batching: requests to one task wait up to ``max_wait`` for others and run as one batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from rsn2.errors import SpecError


@dataclass
class BatchStats:
    """What a batcher did: requests answered, model calls made and the samples in them."""

    requests: int = 0
    calls: int = 0
    samples: int = 0
    largest_batch: int = 0
    call_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


class DynamicBatcher:
    """Runs ``predict`` on batches gathered from concurrent :meth:`submit` calls.

    A batch starts with the oldest waiting request and takes the following ones while they fit in
    ``max_batch`` samples and no more than ``max_wait`` seconds have passed since the first arrived.
    ``predict`` (``(n, *shape) -> (n, outputs)``) runs in ``executor``, so the event loop keeps
    accepting requests meanwhile. A request larger than ``max_batch`` runs alone. If ``predict``
    raises, every request of that batch gets the exception.
    """

    def __init__(
        self, predict: Callable[[np.ndarray], np.ndarray], executor: Executor, max_batch: int, max_wait: float
    ) -> None:
        if max_batch < 1 or max_wait < 0:
            raise SpecError(f"need max_batch >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self.predict, self.executor = predict, executor
        self.max_batch, self.max_wait = max_batch, max_wait
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The outputs for the samples ``x`` (first axis), computed in some batch."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((x, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pending: tuple[np.ndarray, asyncio.Future[np.ndarray]] | None = None
        while True:
            first = pending or await self._queue.get()
            pending = None
            batch = [first]
            size = len(first[0])
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    item = self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if size + len(item[0]) > self.max_batch:
                    pending = item  # starts the next batch
                    break
                batch.append(item)
                size += len(item[0])
            live = [(x, f) for x, f in batch if not f.done()]  # a client that went away
            if not live:
                continue
            inputs = np.concatenate([x for x, _ in live]) if len(live) > 1 else live[0][0]
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self.executor, self.predict, inputs)
            except Exception as exc:  # every request of the batch learns why
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self._record(len(live), len(inputs), time.perf_counter() - started)
            start = 0
            for x, f in live:
                if not f.done():
                    f.set_result(outputs[start : start + len(x)])
                start += len(x)

    def _record(self, requests: int, samples: int, seconds: float) -> None:
        s = self.stats
        s.requests += requests
        s.calls += 1
        s.samples += samples
        s.largest_batch = max(s.largest_batch, samples)
        s.call_seconds += seconds
        if len(s.batch_sizes) < 10_000:
            s.batch_sizes.append(samples)
