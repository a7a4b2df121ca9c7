"""Warp error: how much a clip changes beyond what its scene's motion explains (Lai et al., ECCV 2018).

Lai, Huang, Wang, Shechtman, Yumer, Yang, "Learning Blind Video Temporal Consistency", ECCV
2018, measure temporal consistency by comparing every frame with the previous one moved by the
motion. Here, in 0–255 levels with mean absolute differences:

    E_warp = mean_t  Σ_p M_t(p) |V_t(p) − W_{F_t}[V_{t−1}](p)|  ÷  (3 Σ_p M_t(p)),

V the judged clip, F_t the backward flow of frame t (:mod:`dotrestore.motion`) and M_t the
pixels where that flow is reliable: p + F_t(p) inside the frame and, for an estimated flow, the
forward–backward check (occlusions and scene cuts left out). The flow is not taken from the
judged clip (a clip that boils would set its own motion): estimate it on the clean frames when
they exist, otherwise on the restorations x*, or give the known motion of a synthetic clip.

Unlike the plain frame difference (:mod:`.temporal`), E_warp does not reward blur: a sharp pan
and its blurred copy both score 0 under their exact motion. Compare an output's E_warp with
x*'s and with a plain codec round trip of the same frames (the codec's own shift-variance).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from .. import motion as mo


def _frames(items: Iterable[torch.Tensor]):
    for item in items:
        yield from (item[None] if item.dim() == 3 else item)


def _as_array(frame: torch.Tensor) -> np.ndarray:
    return frame.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()


class WarpError:
    """Streaming E_warp (see the module's docstring) over frames given in order.

    ``update(frames, motion_frames=None, flow=None)``: the next frame(s) of the judged clip, with
    either the same frames of the clip the motion is estimated on (clean frames, or x*) or the
    known backward flow of each (an (H, W, 2) array; ``None`` for the first frame). ``mask``:
    leave out pixels whose estimated flow fails the forward–backward check. ``compute()`` is in
    0–255 levels; ``per_frame`` holds each pair's value.
    """

    def __init__(self, mask: bool = True, preset: str = "medium"):
        self.mask = mask
        self.flow_estimator = mo.FlowEstimator(preset)
        self.previous: np.ndarray | None = None
        self.previous_grey: np.ndarray | None = None
        self.per_frame: list[float] = []

    def reset(self) -> None:
        self.previous = self.previous_grey = None
        self.per_frame = []

    def _flow(self, grey: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        backward = self.flow_estimator(grey, self.previous_grey)
        if not self.mask:
            return backward, None
        return backward, mo.reliable(backward, self.flow_estimator(self.previous_grey, grey))

    def update_one(self, frame: torch.Tensor, motion_frame: torch.Tensor | None = None,
                   flow: np.ndarray | None = None) -> WarpError:
        """One frame of the judged clip, with its motion frame or its known backward flow."""
        if (motion_frame is None) == (flow is None) and self.previous is not None:
            raise ValueError("give each frame either its motion frame (clean or x*) or its known flow")
        current = _as_array(frame)
        grey = mo.grey_levels(motion_frame) if motion_frame is not None else None
        if self.previous is not None:
            if current.shape != self.previous.shape:
                raise ValueError(f"frames change size: {self.previous.shape[:2]} then {current.shape[:2]}")
            if flow is None:
                flow, valid = self._flow(grey)
            else:
                flow, valid = np.asarray(flow, np.float32), None
            if flow.shape != (*current.shape[:2], 2):
                raise ValueError(f"a flow must be (H, W, 2) = {(*current.shape[:2], 2)}, got {flow.shape}")
            valid = mo.inside(flow) if valid is None else valid
            if valid.any():
                diff = np.abs(current - mo.warp(self.previous, flow)).mean(-1)
                self.per_frame.append(255.0 * float(diff[valid].mean()))
        self.previous, self.previous_grey = current, grey
        return self

    def update(self, frames: torch.Tensor, motion_frames: torch.Tensor | None = None,
               flows: Sequence[np.ndarray | None] | None = None) -> WarpError:
        """Add (3, H, W) or (B, 3, H, W) frames, with their motion frames or their flows."""
        frames = frames[None] if frames.dim() == 3 else frames
        if motion_frames is not None:
            motion_frames = motion_frames[None] if motion_frames.dim() == 3 else motion_frames
            if len(motion_frames) != len(frames):
                raise ValueError(f"{len(frames)} frames but {len(motion_frames)} motion frames")
        for i, frame in enumerate(frames):
            self.update_one(frame, None if motion_frames is None else motion_frames[i],
                            None if flows is None else flows[i])
        return self

    def compute(self) -> float:
        if not self.per_frame:
            raise ValueError("the warp error needs at least two frames with reliable motion")
        return float(np.mean(self.per_frame))


def warp_error(frames: Iterable[torch.Tensor], motion_frames: Iterable[torch.Tensor] | None = None, *,
               motion: tuple[float, float] | Sequence[np.ndarray] | Callable[[int], np.ndarray] | None = None,
               mask: bool = True, preset: str = "medium") -> float:
    """E_warp of a clip in 0–255 levels (see the module's docstring).

    ``frames``: the judged clip, (3, H, W) frames or (B, 3, H, W) batches in order. The motion is
    either estimated by DIS on ``motion_frames`` (the same frames of the clean clip, or of x*),
    or known: ``motion=(dx, dy)`` a scene moving by (dx, dy) pixels per frame, a sequence of
    backward flows (entry t for frame t; entry 0 unused), or a function t -> flow.
    """
    if (motion_frames is None) == (motion is None):
        raise ValueError("give either motion_frames (to estimate the flow on) or the known motion")
    metric = WarpError(mask=mask, preset=preset)
    if motion_frames is not None:
        for frame, reference in zip(_frames(frames), _frames(motion_frames), strict=True):
            metric.update_one(frame, reference)
        return metric.compute()
    for t, frame in enumerate(_frames(frames)):
        if t == 0:
            metric.update_one(frame)
        elif isinstance(motion, tuple):
            metric.update_one(frame, flow=mo.translation_flow(tuple(frame.shape[-2:]), *motion))
        else:
            metric.update_one(frame, flow=motion(t) if callable(motion) else motion[t])
    return metric.compute()


__all__ = ["WarpError", "warp_error"]
