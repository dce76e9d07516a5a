"""What the training code needs from the other workers of one fit, and nothing more.

:data:`LOCAL` (a :class:`Local`) is the one-process default: every method is the identity
or the plain one-process computation, so a fit that never names a collective runs
exactly the operations it always did. :class:`Distributed` is the same interface over a
``torch.distributed`` process group, each rank holding a contiguous shard of the rows
(:func:`sklearn_xnn.distributed.fit_sharded`).

The reductions return their result (a tensor on the caller's device, a float for a
float, a float64 NumPy array for a NumPy array); every rank receives the same bits, so
that decisions taken from reduced values agree on all ranks.
"""

import math

import numpy as np
import torch

from sklearn_xnn._nn.data import batches, device_generator


def _same(self, value, *_):
    """``value`` itself: over one process every reduction is the identity."""
    return value


class Local:
    """The collective of a one-process fit: the identity.

    Over every rank's rows (:class:`Distributed`): ``sum``, ``max``, ``min`` reduce a
    value, ``broadcast`` gives rank 0's, ``all_gather_rows`` concatenates rows in rank
    order, ``total_rows`` counts them, ``local_rows`` maps sorted global row indices to
    this shard's positions, ``row_mean(value, n)`` averages a per-rank mean over ``n``
    rows, ``broadcast_module`` gives every rank rank 0's weights, ``batches`` and
    ``steps`` are one epoch's minibatch indices and their count, ``reduce_step(errors,
    params)`` averages the gradients after ``backward`` and the step's constraint errors,
    which it returns.
    """

    world, rank = 1, 0
    sum = max = min = broadcast = all_gather_rows = total_rows = local_rows = _same
    row_mean = broadcast_module = reduce_step = _same
    batches = staticmethod(batches)
    dropout_generator = staticmethod(device_generator)

    def steps(self, n, batch_size):
        return math.ceil(n / batch_size)


#: The collective of every fit that does not name one.
LOCAL = Local()


class Distributed(Local):
    """The collective of one fit over the ranks of a ``torch.distributed`` process group.

    Parameters
    ----------
    rows : sequence of int
        The number of rows of each rank's shard, in rank order (contiguous shards of the
        global rows, rank 0 first).
    seed : int
        Seeds this rank's own shuffling and dropout streams (with the rank).
    group : ProcessGroup or None
        The group; None is the default group.
    """

    def __init__(self, rows, seed, group=None):
        import torch.distributed as dist

        self.dist, self.group = dist, group
        self.world, self.rank = dist.get_world_size(group), dist.get_rank(group)
        self.rows = [int(r) for r in rows]
        self.offset = sum(self.rows[: self.rank])
        self.seed = int(seed)
        cuda = dist.get_backend(group) == "nccl"
        self.wire = torch.device("cuda", torch.cuda.current_device()) if cuda else None
        self.shuffle = torch.Generator().manual_seed(self._stream(0))

    def _stream(self, which):
        """A 63-bit seed of this rank's stream ``which``, derived from ``seed``."""
        state = np.random.SeedSequence([self.seed, self.rank, which]).generate_state(2)
        return int(state[0]) << 31 ^ int(state[1])

    # ------------------------------------------------------------------ primitives
    def _reduce(self, value, op):
        if isinstance(value, np.ndarray):
            t = torch.as_tensor(value, dtype=torch.float64)
            return self._reduce(t, op).numpy()
        if not torch.is_tensor(value):
            return float(self._reduce(torch.tensor(float(value), dtype=torch.float64), op))
        t = value.detach().to(self.wire or "cpu", copy=True).contiguous()
        self.dist.all_reduce(t, op=op, group=self.group)
        return t.to(value.device)

    def sum(self, value):
        return self._reduce(value, self.dist.ReduceOp.SUM)

    def max(self, value):
        return self._reduce(value, self.dist.ReduceOp.MAX)

    def min(self, value):
        return self._reduce(value, self.dist.ReduceOp.MIN)

    def broadcast(self, value):
        """Rank 0's ``value``: a tensor, a float or a tuple of floats."""
        if isinstance(value, tuple):
            return tuple(self.broadcast(torch.tensor(value, dtype=torch.float64)).tolist())
        if not torch.is_tensor(value):
            return float(self.broadcast(torch.tensor(float(value), dtype=torch.float64)))
        t = value.detach().to(self.wire or "cpu", copy=True).contiguous()
        self.dist.broadcast(t, src=self._global(0), group=self.group)
        return t.to(value.device)

    def _global(self, rank):
        return rank if self.group is None else self.dist.get_global_rank(self.group, rank)

    def all_gather_rows(self, t):
        """Every rank's rows of ``t`` stacked in rank order (their numbers may differ)."""
        wire = self.wire or torch.device("cpu")
        count = torch.tensor([t.shape[0]], dtype=torch.int64, device=wire)
        counts = [torch.empty_like(count) for _ in range(self.world)]
        self.dist.all_gather(counts, count, group=self.group)
        counts = [int(c) for c in counts]
        padded = t.new_zeros((max(counts), *t.shape[1:]), device=wire)
        padded[: t.shape[0]] = t.to(wire)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        self.dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)]).to(t.device)

    # ------------------------------------------------------------------ derived
    def total_rows(self, n):
        if n != self.rows[self.rank]:
            raise RuntimeError(f"rank {self.rank} holds {n} rows, not {self.rows[self.rank]}")
        return sum(self.rows)

    def local_rows(self, rows):
        mine = (rows >= self.offset) & (rows < self.offset + self.rows[self.rank])
        return rows[mine] - self.offset

    def row_mean(self, value, n):
        return self.sum(value * n) / self.total_rows(n)

    def _local_batch(self, batch_size):
        return max(1, math.ceil(batch_size / self.world))

    def steps(self, n, batch_size):
        """Every rank takes as many steps as the largest shard needs."""
        b = self._local_batch(batch_size)
        return max(math.ceil(r / b) for r in self.rows)

    def batches(self, data, batch_size, generator):
        """``ceil(batch_size / world)`` of ``data``'s rows a step from this rank's own
        shuffled stream, wrapping around so that every rank takes :meth:`steps` steps of
        full batches (on the device of :func:`~sklearn_xnn._nn.data.batches`)."""
        n, device = data.shape[0], getattr(data, "index_device", data.device)
        b, steps = self._local_batch(batch_size), self.steps(n, batch_size)
        order = torch.randperm(n, generator=self.shuffle)
        order = order.repeat(math.ceil(steps * b / n))[: steps * b].to(device)
        return [order[i * b : (i + 1) * b] for i in range(steps)]

    def reduce_step(self, errors, params):
        """One all-reduce per step: the mean over ranks of every gradient (as
        ``DistributedDataParallel`` averages them) and of the constraint ``errors``."""
        grads = [p.grad for p in params if p.grad is not None]
        flat = [g.reshape(-1) for g in grads]
        if errors is not None:
            dtype = grads[0].dtype if grads else torch.float32
            flat.append(errors.detach().reshape(-1).to(dtype))
        if not flat:
            return errors
        buffer = self.sum(torch.cat(flat)) / self.world
        start = 0
        for g in grads:
            g.copy_(buffer[start : start + g.numel()].view_as(g))
            start += g.numel()
        return None if errors is None else buffer[start:].view_as(errors).to(errors.dtype)

    @torch.no_grad()
    def broadcast_module(self, module):
        for t in module.state_dict().values():
            t.copy_(self.broadcast(t))

    def dropout_generator(self, generator, device):
        gen = torch.Generator(device=device)
        gen.manual_seed(self._stream(1))
        return gen
