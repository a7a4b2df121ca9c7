r"""Streaming first and second moments of D-dimensional samples, in float64, exactly mergeable.

The sufficient statistics of a Gaussian fit: DOT accumulates one :class:`Moments` per side
(latent patches of restorations, of clean images), the metrics one per set of images, and
processes add theirs with an all-reduce.
"""

from __future__ import annotations

import torch

from .statistics import Communicator, Statistics

__all__ = ["Moments"]


class Moments(Statistics):
    r"""Streaming first and second moments of D-dimensional samples, in float64.

    A :class:`~.statistics.Statistics`: the state is four plain tensors, and per-process
    states add up once they share one ``shift`` (:meth:`sync` re-centres every process on
    the first process's shift before summing; :meth:`reset` empties the accumulator):

    - ``count`` : 0-d, the number of samples :math:`n`;
    - ``shift`` : [D], a fixed vector :math:`s` (by default the first batch's mean);
    - ``sum``   : [D], :math:`\sum_i (x_i - s)`;
    - ``outer`` : [D, D], :math:`\sum_i (x_i - s)(x_i - s)^\top`.

    Accumulating around :math:`s` instead of 0 avoids the catastrophic cancellation of
    :math:`\sum x x^\top - n \bar x \bar x^\top` when the data sit far from the origin
    relative to their spread. Then

    .. math::
        \bar x = s + \tfrac{1}{n}\textstyle\sum_i (x_i - s), \qquad
        \hat\Sigma = \frac{1}{n-1}\Big(\textstyle\sum_i (x_i-s)(x_i-s)^\top
                     - \tfrac{1}{n} S S^\top\Big),\ S = \textstyle\sum_i (x_i - s).

    Parameters
    ----------
    dim : int
        Dimension D of the samples.
    shift : Tensor [D], optional
        Fixed centring vector. If omitted, the mean of the first non-empty batch is used.
    device : torch.device or str, optional
        Where the state lives; by default it follows the first batch's device.
    """

    def __init__(self, dim: int, shift: torch.Tensor | None = None, device=None):
        if int(dim) < 1:
            raise ValueError(f"Moments needs dim >= 1, got {dim}")
        super().__init__()
        self.dim = int(dim)
        self._device_fixed = device is not None
        device = torch.device("cpu") if device is None else torch.device(device)
        f64 = dict(dtype=torch.float64, device=device)
        self.add_state("count", torch.zeros((), **f64))
        self.add_state("sum", torch.zeros(self.dim, **f64))
        self.add_state("outer", torch.zeros(self.dim, self.dim, **f64))
        self.add_state("shift", torch.zeros(self.dim, **f64), reduce=None)
        self._shift_given = shift is not None
        self._shift_fixed = shift is not None
        if shift is not None:
            self.shift = self._check_vector(shift, "shift").to(**f64).clone()
            self._defaults["shift"] = self.shift.clone()

    # -- accumulation -------------------------------------------------------------------
    def _check_vector(self, v: torch.Tensor, name: str) -> torch.Tensor:
        if v.shape != (self.dim,):
            raise ValueError(f"{name} must have shape ({self.dim},), got {tuple(v.shape)}")
        return v

    def to(self, device) -> Moments:
        """Move the state to ``device`` (in place) and return self."""
        for name in self.state_names:
            setattr(self, name, getattr(self, name).to(device))
        if self._local is not None:
            self._local = {k: v.to(device) for k, v in self._local.items()}
        return self

    def reset(self) -> Moments:
        """Empty the accumulator: no samples, and a shift chosen again unless one was given."""
        super().reset()
        self._shift_fixed = self._shift_given
        return self

    def update(self, samples: torch.Tensor) -> Moments:
        """Add the rows of ``samples`` [N, D] (cast to float64) to the state; returns self."""
        if samples.ndim != 2 or samples.shape[1] != self.dim:
            raise ValueError(f"samples must have shape (N, {self.dim}), got {tuple(samples.shape)}")
        if samples.shape[0] == 0:
            return self
        self._local_state()
        if self.count.item() == 0 and not self._device_fixed:
            self.to(samples.device)
        x = samples.to(device=self.sum.device, dtype=torch.float64)
        if self.count.item() == 0 and not self._shift_fixed:
            self.shift = x.mean(dim=0)
            self._shift_fixed = True
        x = x - self.shift
        self.count += x.shape[0]
        self.sum += x.sum(dim=0)
        self.outer += x.T @ x
        return self

    @staticmethod
    def _recentred(count, shift, sum_, outer, new_shift):
        r"""(sum, outer) of a state re-centred from ``shift`` to ``new_shift``.

        With :math:`\delta = s - s'`, the sums around :math:`s'` are :math:`S + n\delta` and
        :math:`O + S\delta^\top + \delta S^\top + n\delta\delta^\top`.
        """
        delta = shift - new_shift
        s_sum = sum_ + count * delta
        s_outer = outer + torch.outer(sum_, delta) + torch.outer(delta, sum_) + count * torch.outer(delta, delta)
        return s_sum, s_outer

    def merge(self, other: Moments) -> Moments:
        """Add another state into this one (exact for different shifts); returns self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge Moments of dim {other.dim} into dim {self.dim}")
        if other.count.item() == 0:
            return self
        self._local_state()
        dev = self.sum.device
        o_count, o_shift, o_sum, o_outer = (
            t.to(dev) for t in (other.count, other.shift, other.sum, other.outer)
        )
        if self.count.item() == 0 and not self._shift_fixed:
            self.shift = o_shift.clone()
            self._shift_fixed = True
        s_sum, s_outer = self._recentred(o_count, o_shift, o_sum, o_outer, self.shift)
        self.count = self.count + o_count
        self.sum = self.sum + s_sum
        self.outer = self.outer + s_outer
        return self

    def _reduce(self, local: dict[str, torch.Tensor], comm: Communicator) -> dict[str, torch.Tensor]:
        r"""Re-centre on the first process's shift :math:`s_0` (broadcast), then sum.

        :math:`S = \sum_r S_r`, :math:`O = \sum_r O_r` around :math:`s_0`; a process with no
        samples contributes zeros, so the result is the exact state of the union up to
        float64 rounding.
        """
        shift = comm.broadcast(local["shift"], src=0)
        count = local["count"]
        s_sum, s_outer = self._recentred(count, local["shift"], local["sum"], local["outer"], shift)
        return {"count": comm.all_reduce_sum(count), "sum": comm.all_reduce_sum(s_sum),
                "outer": comm.all_reduce_sum(s_outer), "shift": shift}

    # -- results ------------------------------------------------------------------------
    @property
    def mean(self) -> torch.Tensor:
        """Sample mean [D] (float64)."""
        n = self.count.item()
        if n < 1:
            raise ValueError("Moments.mean needs at least 1 sample, got 0")
        return self.shift + self.sum / n

    @property
    def covariance(self) -> torch.Tensor:
        """Unbiased sample covariance [D, D] (divides by N - 1; float64, symmetric)."""
        n = self.count.item()
        if n < 2:
            raise ValueError(f"Moments.covariance needs at least 2 samples, got {int(n)}")
        cov = (self.outer - torch.outer(self.sum, self.sum) / n) / (n - 1)
        return 0.5 * (cov + cov.T)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state as plain tensors (``count``, ``shift``, ``sum``, ``outer``)."""
        return {"count": self.count, "shift": self.shift, "sum": self.sum, "outer": self.outer}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> Moments:
        """Rebuild from :meth:`state_dict` (copies the tensors, as float64)."""
        missing = {"count", "shift", "sum", "outer"} - set(state)
        if missing:
            raise ValueError(f"Moments state is missing {sorted(missing)}")
        shift = torch.as_tensor(state["shift"])
        m = cls(shift.shape[0], device=shift.device)
        m._device_fixed = False
        f64 = dict(dtype=torch.float64, device=shift.device)
        m.count = torch.as_tensor(state["count"]).to(**f64).reshape(()).clone()
        m.shift = shift.to(**f64).clone()
        m.sum = m._check_vector(torch.as_tensor(state["sum"]), "sum").to(**f64).clone()
        m.outer = torch.as_tensor(state["outer"]).to(**f64).clone()
        if m.outer.shape != (m.dim, m.dim):
            raise ValueError(f"outer must have shape ({m.dim}, {m.dim}), got {tuple(m.outer.shape)}")
        # A non-empty state's shift is part of its meaning; an empty one may pick a new one.
        m._shift_fixed = m.count.item() > 0
        return m

    def __repr__(self) -> str:
        return f"Moments(dim={self.dim}, count={int(self.count.item())})"
