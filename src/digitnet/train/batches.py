"""An epoch's order and its mini-batches.

Shuffling uses a fresh ``numpy.random.Generator`` per epoch seeded from
``(seed, epoch)``, so one seed fixes the whole run bit for bit, and a run
resumed at epoch ``k`` sees exactly the order the uninterrupted run would
have.  Augmentation draws from its own stream, seeded ``(seed, epoch, 1)``,
and dropout from another, ``(seed, epoch, 2)``, so that turning either on
leaves the order (and the other) as it is.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Rows gathered per np.take when shuffling (measured: per-batch gathers of
# 10 rows cost 40 ms per MNIST epoch, chunks of ~1,000 rows 26 ms).
_GATHER_ROWS = 1024
# The augmentation's stream: (seed, epoch, _AUGMENT_STREAM); dropout's: (seed, epoch, _DROPOUT_STREAM).
_AUGMENT_STREAM = 1
_DROPOUT_STREAM = 2


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class Batches:
    """Cuts ``X`` ``(n, n_inputs)`` and ``Y`` ``(n, n_outputs)`` into an epoch's mini-batches.

    ``batch`` rows each (the last one may be shorter).  Shuffled or augmented
    inputs are gathered ~1,000 rows at a time into one reused array (one
    ``np.take`` per chunk instead of one gather per batch); the data set
    itself is never copied whole, and never changed.  With ``prefetch`` (and
    an augmentation), the next chunk is gathered and augmented in a
    background thread while the steps run on this one, in two alternating
    arrays.  The ``record`` preset's distortions cost ~0.9 s of CPU per
    MNIST epoch, ~13% of its epoch with one BLAS thread; made on the
    second core, they shorten that epoch by ~15% (with two BLAS threads
    both cores are busy and it makes no difference; benchmarks/PRESETS.md).
    The chunks are made one at a time in order, so the images are the
    same bit for bit either way.
    """

    def __init__(self, X, Y, labels, batch: int, shuffle: bool, augment, seed: int,
                 prefetch: bool = False, epochs: int | None = None):
        self.X, self.Y, self.labels = X, Y, labels
        self.n, self.batch = len(X), batch
        self.n_batches = math.ceil(self.n / batch)
        self.shuffled = shuffle and self.n_batches > 1
        self.augment, self.seed, self.epochs = augment, seed, epochs
        self.rows_per_gather = max(1, _GATHER_ROWS // batch) * batch
        gathers = self.shuffled or augment is not None
        # With prefetch, the next chunk is gathered (and augmented) in a
        # background thread while the steps run on this one: two buffers.
        self.prefetch = prefetch and augment is not None and self.n > self.rows_per_gather
        shape = (min(self.rows_per_gather, self.n), X.shape[1])
        self.buffers = [np.empty(shape, X.dtype) for _ in range(2 if self.prefetch else 1)] if gathers else []

    @property
    def sizes(self) -> set[int]:
        """The batch sizes an epoch uses (the last batch may be shorter)."""
        return {self.batch, self.n - (self.n_batches - 1) * self.batch}

    def epoch(self, epoch: int):
        """``(Y_epoch, labels_epoch)`` in the epoch's order, and an iterator of ``(start, stop, X_b)``."""
        order = epoch_order(self.seed, epoch, self.n) if self.shuffled else None
        # The (small) targets and labels are shuffled once per epoch, so a step slices them.
        Y, labels = (self.Y, self.labels) if order is None else (self.Y[order], self.labels[order])
        rng = None if self.augment is None else np.random.default_rng([self.seed, epoch, _AUGMENT_STREAM])
        if self.epochs is not None and hasattr(self.augment, "set_epoch"):
            # Before the first chunk is made (by this thread or the worker).
            self.augment.set_epoch(epoch, self.epochs)
        return Y, labels, self._inputs(order, rng)

    def dropout_rng(self, epoch: int) -> np.random.Generator:
        """The generator of the epoch's dropout masks, seeded by (seed, epoch, 2)."""
        return np.random.default_rng([self.seed, epoch, _DROPOUT_STREAM])

    def _inputs(self, order, rng):
        if not self.buffers:
            for b in range(self.n_batches):
                start, stop = b * self.batch, min((b + 1) * self.batch, self.n)
                yield start, stop, self.X[start:stop]
            return
        chunks = [(start, min(start + self.rows_per_gather, self.n))
                  for start in range(0, self.n, self.rows_per_gather)]
        if not self.prefetch:
            for start, end in chunks:
                rows = self._gather(self.buffers[0], start, end, order, rng)
                yield from self._cut(rows, start, end)
            return
        # Chunk k + 1 is made in the worker while the steps run on chunk k.  The
        # worker makes the chunks one at a time, in order, so it draws from
        # `rng` exactly as the loop above would: the same images, bit for bit.
        with ThreadPoolExecutor(1, thread_name_prefix="digitnet-batches") as worker:
            pending = worker.submit(self._gather, self.buffers[0], *chunks[0], order, rng)
            for k, (start, end) in enumerate(chunks):
                rows = pending.result()
                if k + 1 < len(chunks):   # the other buffer: chunk k − 1's steps are done
                    pending = worker.submit(self._gather, self.buffers[(k + 1) % 2], *chunks[k + 1],
                                            order, rng)
                yield from self._cut(rows, start, end)

    def _cut(self, rows, start, end):
        for b_start in range(start, end, self.batch):
            b_stop = min(b_start + self.batch, end)
            yield b_start, b_stop, rows[b_start - start:b_stop - start]

    def _gather(self, buffer, start, end, order, rng) -> np.ndarray:
        rows = buffer[:end - start]
        if order is None:
            np.copyto(rows, self.X[start:end])
        else:
            # mode="clip" (the indices are a permutation, always in range)
            # lets take() write straight into `rows`; "raise" would buffer.
            np.take(self.X, order[start:end], axis=0, out=rows, mode="clip")
        if self.augment is not None:
            self.augment(rows, rng)
        return rows
