r"""Statistics whose state tensors add up across processes: ``update``, ``merge``, ``sync``, ``reset``.

The torchmetrics pattern (``add_state(name, default, dist_reduce_fx="sum")``): a statistic is
a few tensors :math:`\theta_r` per process whose value over all processes is
:math:`\sum_r \theta_r`. This is the one statistics type of the library: the patch moments a
DOT fits (:class:`~.moments.Moments`) and the streaming metrics are built on it.

``sync`` keeps the local state aside and shows the sum over processes, so calling it twice
gives the same state (it sums the kept local state again, never the already summed one); an
``update`` after a ``sync`` continues the local state. ``reset`` returns to the empty state.

The processes are reached through a *communicator* passed to ``sync``: any object with
``all_reduce_sum(tensor) -> tensor`` and ``broadcast(tensor, src=0) -> tensor`` (the module
:mod:`dotrestore.runtime.parallel` is one). Nothing here knows ``torch.distributed``.
"""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["Communicator", "Statistics"]


class Communicator(Protocol):
    """What :meth:`Statistics.sync` needs from the processes (collectives on plain tensors)."""

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor: ...

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor: ...


class Statistics:
    """Base of sum-reduced statistics: declare the state with :meth:`add_state` in ``__init__``.

    Subclasses define ``update`` (calling :meth:`_local_state` first, so that accumulation
    after a :meth:`sync` continues this process's own state) and read their state tensors as
    attributes. :meth:`_reduce` may be overridden when the states add up only after a common
    re-centring (see :class:`~.moments.Moments`).
    """

    def __init__(self) -> None:
        self._defaults: dict[str, torch.Tensor] = {}
        self._reductions: dict[str, str | None] = {}
        self._local: dict[str, torch.Tensor] | None = None  # this process's state while synced

    def add_state(self, name: str, default: torch.Tensor, reduce: str | None = "sum") -> None:
        """Declare a state tensor ``name`` that starts at ``default``.

        ``reduce="sum"``: its value over processes is the sum of theirs; ``None``: the
        subclass's :meth:`_reduce` says (e.g. a centring vector common to all processes).
        """
        if reduce not in ("sum", None):
            raise ValueError(f"reduce must be 'sum' or None, got {reduce!r}")
        self._defaults[name] = default.detach().clone()
        self._reductions[name] = reduce
        setattr(self, name, default.detach().clone())

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self._defaults)

    @property
    def synced(self) -> bool:
        """True between :meth:`sync` and the next ``update``/``merge``/``reset``."""
        return self._local is not None

    def _state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._defaults}

    def _local_state(self) -> None:
        """Go back to this process's own state (after a :meth:`sync`); a no-op otherwise."""
        if self._local is not None:
            for name, value in self._local.items():
                setattr(self, name, value)
            self._local = None

    def reset(self) -> Statistics:
        """Return to the empty state (the defaults, on the state's current device); returns self."""
        self._local = None
        for name, default in self._defaults.items():
            setattr(self, name, default.to(getattr(self, name).device).clone())
        return self

    def merge(self, other: Statistics) -> Statistics:
        """Add ``other``'s (visible) state into this process's state; returns self."""
        self._local_state()
        for name in self._summed():
            setattr(self, name, getattr(self, name) + getattr(other, name).to(getattr(self, name).device))
        return self

    def sync(self, comm: Communicator | None = None) -> Statistics:
        r"""Show the sum over processes :math:`\sum_r \theta_r` (collective); returns self.

        Idempotent: the local state is kept, and a second call sums it again. With ``comm``
        None (one process) nothing changes.
        """
        if comm is None:
            return self
        local = self._local if self._local is not None else {k: v.clone() for k, v in self._state().items()}
        for name, value in self._reduce(local, comm).items():
            setattr(self, name, value)
        self._local = local
        return self

    def _reduce(self, local: dict[str, torch.Tensor], comm: Communicator) -> dict[str, torch.Tensor]:
        """The synced state from this process's ``local`` state (must not modify ``local``)."""
        return {name: comm.all_reduce_sum(value) if name in self._summed() else value
                for name, value in local.items()}

    def _summed(self) -> list[str]:
        return [name for name, reduce in self._reductions.items() if reduce == "sum"]
