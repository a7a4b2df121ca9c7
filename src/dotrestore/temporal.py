"""Temporal consistency of the detail DOT adds to a video: it moves with the scene.

Frame by frame, DOT's latent grid is fixed to the frame while the scene moves across it, so the
detail it adds, δ_t = x̂_t − x*_t, changes with the scene's sub-grid position and boils (on a
TAEF2 pan, 4× the codec round trip's warp error, :mod:`dotrestore.metrics.warp`). Here the
detail of frame t is blended with the previous frame's, moved by the motion of x*:

    s_t = m_t · [w · W_{F_t}[s_{t−1}] + (1 − w) · δ_t] + (1 − m_t) · δ_t,     x̂_t ← x*_t + s_t,

F_t the backward DIS flow of x*_t to x*_{t−1} (x* is smooth, which helps the estimate;
:mod:`dotrestore.motion`) and m_t ∈ [0, 1] where that flow is reliable: the forward–backward
check, x*_t close to W_{F_t}[x*_{t−1}], and not a scene cut (where most of the frame fails, frame
t keeps its own detail); m_t also falls to 0 where the scene stands still (|F_t| below half a
pixel), since a still point's own detail does not boil, so a still scene stays still. Where the
scene moved rather than changed the detail is carried along (an exponential average over about
(1 + w)/(1 − w) frames, in the scene's coordinates); where it changed, frame t's own detail wins.

Averaging detail that differs from frame to frame lowers its energy (blur, in effect), most at
the finest scales, where repeated warps also lose the most (hence Lanczos sampling). So the
blended detail gets back, octave by octave (:mod:`dotrestore.octaves`: cut-offs at 1/16, 1/8
and 1/4 cycle per pixel), the local energy of the frame's own detail, with a gain in
[1, ``max_gain``] smooth over ``energy_scale`` pixels: the variance-preserving blending of Heitz
& Neyret (HPG 2018). The energy aimed at is itself carried along the motion with the detail
(E_t = m_t · [w · W[E_{t−1}] + (1 − w) · e_t] + (1 − m_t) · e_t, e_t the own detail's band
energies): energy, unlike detail, does not cancel when averaged, and a target that boiled with
the frame's own detail would make the gain boil.

Measured with TAEF2 on a rotating, zooming clip with flow from the clean frames
(``benchmarks/video_warp.py``; warp error ÷ the codec round trip's, high-frequency spectrum
error ÷ frame-by-frame DOT's): DIS ``fast`` at half resolution, cubic warps, w = 0.8 and gains
in two Gaussian bands gave 1.43× and 1.33×; DIS ``medium`` at full resolution 1.13× and 1.33×;
Lanczos warps 1.15× and 1.26×; octave gains 1.23× and 1.09×; w = 0.9, ``max_gain`` 3 and
carried energy targets (these defaults) 1.16× and 1.06×, and on a pan 0.70× and 1.00×. The
exact flow in place of DIS ``medium``'s did no better (1.19× against 1.18×).

Seekable and deterministic: one recursion would make frame t depend on every frame before it,
so a process starting mid-clip could not reproduce it. Instead chains start every ``H = period``
frames (chain c at frame c·H, from δ alone) and each lives 2H frames; frame t mixes the two
alive chains, the older with weight 1 − a/H (a the younger's age), so a chain fades in from
weight 0 and out to 0 without a jump. Frame t then depends only on frames ≥ (⌊t/H⌋ − 1)·H: a
process that starts at frame s runs from :meth:`TemporalDetail.warm_up_start` ``(s)`` and drops
the frames before s, and writes what a one-process run writes, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from . import motion as mo
from .octaves import octave_bands

#: Below this fraction of reliable pixels a frame is taken as a scene cut: its own detail only.
SCENE_CUT = 0.3

#: Chain-state keys (ENERGY, key) hold the band energies aimed at for output ``key``.
ENERGY = "energy"


def _array(image: torch.Tensor) -> np.ndarray:
    return image.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()


def _tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).to(like.device, like.dtype)


class TemporalDetail:
    """Carries DOT's added detail along the motion of x* (see the module's docstring).

    ``weight`` is w, ``period`` H, ``tolerance`` the largest |x*_t − W[x*_{t−1}]| (0–1 grey) still
    taken as the same scene point; below ``still_motion`` pixels of motion per frame w falls
    linearly to 0 (a still scene keeps its own detail, which does not boil, and stays still);
    ``energy_scale`` and ``max_gain`` restore the blended detail's energy octave by octave (0
    turns that off). DIS runs with ``preset`` on x* resized by ``flow_scale``. Feed every frame
    of a clip in order with :meth:`__call__`, from :meth:`warm_up_start` of the first frame wanted.
    """

    def __init__(self, weight: float = 0.9, period: int = 4, tolerance: float = 0.06, preset: str = "medium",
                 flow_scale: float = 1.0, still_motion: float = 0.5, energy_scale: float = 8.0,
                 max_gain: float = 3.0):
        if not 0 <= weight < 1:
            raise ValueError(f"weight must be in [0, 1), got {weight}")
        if period < 1:
            raise ValueError(f"period must be at least 1, got {period}")
        self.weight, self.period, self.tolerance = float(weight), int(period), float(tolerance)
        self.still_motion = float(still_motion)
        self.energy_scale, self.max_gain = float(energy_scale), float(max_gain)
        self.flow = mo.FlowEstimator(preset, flow_scale)
        self._previous: tuple[int, np.ndarray, np.ndarray] | None = None  # (index, grey x*, x* as float)
        self._chains: dict[int, dict] = {}  # chain number -> {key: detail, (ENERGY, key): band energies}

    def warm_up_start(self, start: int) -> int:
        """The first frame to feed so that frame ``start`` comes out as in a run from frame 0."""
        return max(0, (start // self.period - 1) * self.period)

    def reliability(self, grey: np.ndarray, x_star: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(backward flow, m_t) of this frame against the previous one; m_t = 0 everywhere at a cut."""
        _, previous_grey, previous = self._previous
        backward = self.flow(grey, previous_grey)
        trusted = mo.reliable(backward, self.flow(previous_grey, grey))
        moved = np.einsum("hwc->hw", np.abs(mo.warp(previous, backward) - x_star)) / 3
        trusted &= moved <= self.tolerance
        if trusted.mean() < SCENE_CUT:
            return None, np.zeros(grey.shape, np.float32)
        cv2 = mo.import_cv2()
        # a soft edge: seams between carried and own detail would themselves be edges
        soft = cv2.GaussianBlur(trusted.astype(np.float32), (0, 0), 1.5) * trusted
        if self.still_motion > 0:  # a still point's own detail does not boil: nothing to carry
            soft *= np.minimum(1.0, np.sqrt(mo.squared_length(backward)) / self.still_motion)
        return backward, soft

    def _advance(self, index: int, backward: np.ndarray | None, mask: np.ndarray, own: dict) -> None:
        """Every alive chain moved to frame ``index``; a chain born here starts from ``own``."""
        born = index // self.period
        self._chains = {c: s for c, s in self._chains.items() if c >= born - 1}
        w = (self.weight * mask)[..., None]
        for states in self._chains.values():
            for key, value in own.items():
                if backward is None:
                    states[key] = value
                else:  # detail is sharp (Lanczos keeps it); energy maps are smooth
                    sampling = "linear" if isinstance(key, tuple) else "lanczos"
                    carried = mo.warp(states[key], backward, sampling)
                    states[key] = value + w * (carried - value)
        if index % self.period == 0:
            self._chains[born] = dict(own)

    def __call__(self, index: int, x_star: torch.Tensor, outputs: dict) -> dict:
        """Frame ``index`` (frames must come in order, without gaps): x* (3, H, W) and its
        outputs ``{key: x̂}``; returns ``{key: x*_t + s_t}`` clipped to [0, 1]."""
        previous = self._previous
        if previous is not None and index != previous[0] + 1:
            raise ValueError(f"frames must come in order: frame {index} after frame {previous[0]}")
        if previous is None and index % self.period != 0:
            raise ValueError(f"start at a chain's first frame ({self.warm_up_start(index)}), not {index}")
        grey, star = mo.grey_levels(x_star), _array(x_star)
        own = {key: _array(out) - star for key, out in outputs.items()}
        if self.energy_scale > 0:
            own.update({(ENERGY, key): self._energies(octave_bands(own[key])) for key in outputs})
        if previous is None or previous[1].shape != grey.shape:
            backward, mask = None, np.zeros(grey.shape, np.float32)
            self._chains = {}
        else:
            backward, mask = self.reliability(grey, star)
        self._previous = (index, grey, star)
        self._advance(index, backward, mask, own)
        young = index // self.period
        older = self._chains.get(young - 1)
        fade = (index - young * self.period) / self.period  # weight of the younger chain

        def mixed(key):
            value = self._chains[young][key]
            return value if older is None else older[key] + fade * (value - older[key])

        result = {}
        for key in outputs:
            detail = mixed(key)
            if self.energy_scale > 0:
                detail = self._keep_energy(mixed((ENERGY, key)), detail)
            result[key] = _tensor(np.clip(star + detail, 0, 1), outputs[key])
        return result

    def _energies(self, bands: list[np.ndarray]) -> np.ndarray:
        """(H, W, bands) local energy of each band: Σ_c b², Gaussian-averaged over ``energy_scale``
        pixels (at a quarter of the resolution when that scale allows: the result is smooth)."""
        cv2 = mo.import_cv2()
        energies = np.stack([np.einsum("hwc,hwc->hw", b, b) for b in bands], -1)
        height, width = energies.shape[:2]
        step = 4 if self.energy_scale >= 4 and min(height, width) >= 64 else 1
        if step > 1:
            small = cv2.resize(energies, (width // step, height // step), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), self.energy_scale / step)
            return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).reshape(energies.shape)
        return cv2.GaussianBlur(energies, (0, 0), self.energy_scale).reshape(energies.shape)

    def _keep_energy(self, target: np.ndarray, blended: np.ndarray) -> np.ndarray:
        """The blended detail with, in each octave, the local energy ``target`` (H, W, bands): a
        gain sqrt(target ÷ energy) clipped to [1, ``max_gain``] per band (module's docstring)."""
        bands = octave_bands(blended)
        gains = np.sqrt((np.maximum(target, 0) + 1e-7) / (self._energies(bands) + 1e-7))
        gains = np.clip(gains, 1.0, self.max_gain)
        return sum(gains[..., i:i + 1] * band for i, band in enumerate(bands))


__all__ = ["TemporalDetail", "SCENE_CUT"]
