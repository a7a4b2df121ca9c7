r"""Streaming first and second moments of D-dimensional samples, in float64, exactly mergeable.

The sufficient statistics of a Gaussian fit: DOT accumulates one :class:`Moments` per side
(latent patches of restorations, of clean images), the metrics one per set of images, and
processes add theirs with an all-reduce.
"""

from __future__ import annotations

import torch

__all__ = ["Moments"]


class Moments:
    r"""Streaming first and second moments of D-dimensional samples, in float64.

    The state is four plain tensors, so that per-process states can be summed with an
    all-reduce (``count``, ``sum`` and ``outer`` add up once every process uses the same
    ``shift``; pass ``shift`` explicitly, e.g. a broadcast one, when doing that):

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
        self.dim = int(dim)
        self._device_fixed = device is not None
        device = torch.device("cpu") if device is None else torch.device(device)
        f64 = dict(dtype=torch.float64, device=device)
        self.count = torch.zeros((), **f64)
        self.sum = torch.zeros(self.dim, **f64)
        self.outer = torch.zeros(self.dim, self.dim, **f64)
        self._shift_fixed = shift is not None
        if shift is None:
            self.shift = torch.zeros(self.dim, **f64)
        else:
            self.shift = self._check_vector(shift, "shift").to(**f64).clone()

    # -- accumulation -------------------------------------------------------------------
    def _check_vector(self, v: torch.Tensor, name: str) -> torch.Tensor:
        if v.shape != (self.dim,):
            raise ValueError(f"{name} must have shape ({self.dim},), got {tuple(v.shape)}")
        return v

    def to(self, device) -> Moments:
        """Move the state to ``device`` (in place) and return self."""
        for name in ("count", "shift", "sum", "outer"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def update(self, samples: torch.Tensor) -> Moments:
        """Add the rows of ``samples`` [N, D] (cast to float64) to the state; returns self."""
        if samples.ndim != 2 or samples.shape[1] != self.dim:
            raise ValueError(f"samples must have shape (N, {self.dim}), got {tuple(samples.shape)}")
        if samples.shape[0] == 0:
            return self
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

    def merge(self, other: Moments) -> Moments:
        r"""Add another state into this one (exact for different shifts); returns self.

        With :math:`\delta = s_o - s`, the other's sums re-centred on :math:`s` are
        :math:`S_o + n_o\delta` and
        :math:`O_o + S_o\delta^\top + \delta S_o^\top + n_o\delta\delta^\top`.
        """
        if other.dim != self.dim:
            raise ValueError(f"cannot merge Moments of dim {other.dim} into dim {self.dim}")
        if other.count.item() == 0:
            return self
        dev = self.sum.device
        o_count, o_shift, o_sum, o_outer = (
            t.to(dev) for t in (other.count, other.shift, other.sum, other.outer)
        )
        if self.count.item() == 0 and not self._shift_fixed:
            self.shift = o_shift.clone()
            self._shift_fixed = True
        delta = o_shift - self.shift
        s_sum = o_sum + o_count * delta
        s_outer = o_outer + torch.outer(o_sum, delta) + torch.outer(delta, o_sum) + o_count * torch.outer(delta, delta)
        self.count += o_count
        self.sum += s_sum
        self.outer += s_outer
        return self

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
