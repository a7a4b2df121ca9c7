"""Several processes, one result: the only module that talks to ``torch.distributed``.

Launched with ``torchrun --nproc_per_node N -m dotrestore ...`` (or across nodes with
torchrun's rendezvous flags), every process runs the same command. :func:`init` reads
torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...) and
joins the process group: NCCL when the process works on a CUDA device, gloo otherwise. A
plain ``python -m dotrestore`` (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) initialises nothing
and every function here is the identity of the single-process case.

Work is split by :func:`shard`: rank r of W takes the files at positions r, r + W,
r + 2W, ... of the sorted input list (round robin), so the split depends only on the list
and W, rank 0 gets the first file, and the shards of images of similar sizes stay balanced.

What the processes exchange:

- :func:`all_reduce_sum` and :func:`broadcast`: plain tensors. This module is the
  communicator that statistics take in ``sync(parallel)`` (:mod:`dotrestore.ot.statistics`):
  patch moments re-centre on rank 0's shift and add their float64 sums, metric states add up;
  nothing here knows what the tensors mean;
- :func:`gather_objects`: per-image rows, in rank order;
- :func:`agree_on_error`: after validation every rank learns whether any rank failed and why,
  so all of them stop with the same message (the CLI exits with status 2).

Every collective has a timeout (``DOTRESTORE_DIST_TIMEOUT`` seconds, :func:`~.environment.dist_timeout_s`):
a rank that dies makes the others fail instead of hanging.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Sequence

import torch

from ..errors import DotRestoreError, InputError
from . import environment
from .devices import local_device

_state = {"initialised": False, "device": None}


def _dist():
    import torch.distributed as dist

    return dist


def requested() -> bool:
    """True when the environment asks for more than one process (set by torchrun)."""
    return environment.world_size() > 1


def active() -> bool:
    """True once :func:`init` has joined a process group of more than one process."""
    return _state["initialised"]


def init(device: str | torch.device | None = None) -> bool:
    """Join torchrun's process group when the environment asks for one; returns :func:`active`.

    ``device`` is where this process computes: a CUDA device selects NCCL (and, when no
    index is given, ``cuda:LOCAL_RANK``); anything else gloo. Idempotent.
    """
    if _state["initialised"] or not requested():
        return _state["initialised"]
    dist = _dist()
    if not dist.is_available():
        raise DotRestoreError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    dev = local_device(device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    kwargs = {"device_id": dev} if dev.type == "cuda" else {}
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    timeout = environment.dist_timeout_s()
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout), **kwargs)
    except (dist.DistError, RuntimeError, ValueError) as exc:  # a peer that never comes, a bad MASTER_ADDR ...
        reason = " ".join(str(exc).split())[:300]
        raise InputError(f"torchrun (WORLD_SIZE={environment.world_size()})", f"the processes could not meet within "
                         f"{timeout:g} s ({reason}): start every process, check MASTER_ADDR/MASTER_PORT, or raise "
                         "DOTRESTORE_DIST_TIMEOUT") from None
    _state.update(initialised=True, device=dev)
    return True


def finish() -> None:
    """Leave the process group (at the end of a command)."""
    if _state["initialised"]:
        _dist().destroy_process_group()
        _state.update(initialised=False, device=None)


def exit_now(code: int) -> None:
    """End this process at once with ``code``, without tearing the process group down.

    For an error every rank agreed on: the ranks exit together, instead of one lingering in
    teardown while torchrun, seeing the first exit, terminates it with SIGTERM.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def rank() -> int:
    return _dist().get_rank() if active() else 0


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def is_main() -> bool:
    """True on the process that writes shared outputs (rank 0, or the only process)."""
    return rank() == 0


def shard(items: Sequence, rank_: int | None = None, world: int | None = None) -> list:
    """This rank's items: positions rank, rank + W, rank + 2W, ... (round robin)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return list(items[r::w])


def _comm_device() -> torch.device:
    # NCCL moves CUDA tensors only; gloo CPU tensors.
    dev = _state["device"]
    return dev if dev is not None and dev.type == "cuda" else torch.device("cpu")


def barrier() -> None:
    if active():
        _dist().barrier()


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """``tensor`` of rank ``src`` on every rank (a new tensor on the input's device)."""
    if not active():
        return tensor
    t = tensor.detach().to(_comm_device()).clone()
    _dist().broadcast(t, src=src)
    return t.to(tensor.device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks (a new tensor on the input's device)."""
    if not active():
        return tensor
    t = tensor.detach().to(_comm_device()).clone()
    _dist().all_reduce(t, op=_dist().ReduceOp.SUM)
    return t.to(tensor.device)


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (picklable objects)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run by rank 0 alone, its (picklable) result on every rank.

    For a verdict every rank needs but one can reach: probing a clip reads all of it, so one
    rank does, not every rank. Collective; a DotRestoreError of ``fn`` stops every rank with
    its line (:func:`run_checked`).
    """
    result = run_checked(fn, *args, **kwargs) if is_main() else run_checked(lambda: None)
    return gather_objects(result)[0]


def gather_tensors(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (shapes may differ along dim 0), in rank order.

    The signature of torchmetrics' ``dist_sync_fn``, so torchmetrics objects sync through here.
    """
    if not active():
        return [tensor]
    shapes = gather_objects(tuple(tensor.shape))
    largest = max(s[0] if s else 1 for s in shapes)
    t = tensor.detach().to(_comm_device())
    if t.ndim and t.shape[0] < largest:
        t = torch.cat([t, t.new_zeros((largest - t.shape[0], *t.shape[1:]))])
    out = [torch.empty_like(t) for _ in range(world_size())]
    _dist().all_gather(out, t, group=group)
    return [o[: s[0]].to(tensor.device) if s else o.to(tensor.device) for o, s in zip(out, shapes)]


def agree_on_error(error: BaseException | None) -> None:
    """Collective: raise on every rank when any rank had an ``error`` (e.g. a corrupt file).

    Each rank passes the :class:`DotRestoreError` it raised, or None. The lowest failing rank's
    error is broadcast (errors pickle with their subject) and raised everywhere, so every process
    stops with the same line naming the file; one process just re-raises.
    """
    if not active():
        if error is not None:
            raise error
        return
    flag = torch.tensor([rank() if error is not None else world_size()], dtype=torch.int64)
    first = int(_all_reduce_min(flag).item())
    if first == world_size():
        return
    message = [error if error is not None else None]
    _dist().broadcast_object_list(message, src=first)
    if error is not None and rank() == first:
        raise error
    raise message[0]


def _all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    t = tensor.to(_comm_device()).clone()
    _dist().all_reduce(t, op=_dist().ReduceOp.MIN)
    return t.cpu()


def run_checked(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on every rank; if it raises a DotRestoreError on any rank,
    every rank raises (see :func:`agree_on_error`). Returns ``fn``'s result."""
    try:
        result, error = fn(*args, **kwargs), None
    except DotRestoreError as exc:
        result, error = None, exc
    agree_on_error(error)
    return result
