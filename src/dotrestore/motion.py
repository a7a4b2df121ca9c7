"""Motion between video frames: optical flow, warping, and where the flow can be trusted.

Conventions (one for the whole package): frames are (3, H, W) tensors in [0, 1]; a flow is a
float32 (H, W, 2) array of (x, y) displacements; the *backward* flow F_t of frame t says where
each of its pixels was in frame t − 1,

    f_t(p) ≈ f_{t−1}(p + F_t(p)),     W_F[f_{t−1}](p) = f_{t−1}(p + F_t(p)),

so warping frame t − 1 by F_t lines it up with frame t (Lai et al., ECCV 2018; Ruder et al.,
GCPR 2016). Flow is estimated by DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse
Search", ECCV 2016; OpenCV's ``DISOpticalFlow``) on the grey frames. A pixel's flow is
*reliable* when forward and backward flows agree (Sundaram et al., ECCV 2010):

    |F_t(p) + G_t(p + F_t(p))|² ≤ 0.01 (|F_t(p)|² + |G_t(p + F_t(p))|²) + 0.5,

G_t the forward flow from t − 1 to t, and p + F_t(p) lies inside frame t − 1. Occluded and
disoccluded pixels, and everything after a scene cut, fail it.

OpenCV (``opencv-python-headless``, the ``video`` extra) is imported when first needed.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

#: DIS presets by name (OpenCV's ``DISOPTICAL_FLOW_PRESET_*``): speed against accuracy.
PRESETS = ("ultrafast", "fast", "medium")


def import_cv2():
    """OpenCV, or an ImportError saying how to install it."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("optical flow needs OpenCV: pip install opencv-python-headless "
                          "(or the video extra: pip install 'dotrestore[video]')") from exc
    return cv2


def grey_levels(frame: torch.Tensor) -> np.ndarray:
    """(H, W) uint8 luma (BT.601 weights) of a (3, H, W) frame in [0, 1]: what DIS reads."""
    frame = frame.detach().to("cpu", torch.float32)
    luma = 0.299 * frame[0] + 0.587 * frame[1] + 0.114 * frame[2]
    return luma.mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()


class FlowEstimator:
    """DIS optical flow between grey frames: ``estimator(a, b)`` is F with a(p) ≈ b(p + F(p)).

    ``preset`` trades speed for accuracy (:data:`PRESETS`). ``scale`` < 1 estimates on frames
    resized by that factor and scales the flow back up (restored frames are smooth, so half
    resolution loses little and costs a quarter). The estimate is deterministic: the same
    frames give the same flow in any process.
    """

    def __init__(self, preset: str = "medium", scale: float = 1.0):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        cv2 = import_cv2()
        code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset]
        self._dis = cv2.DISOpticalFlow_create(code)
        self.preset, self.scale = preset, float(scale)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cv2 = import_cv2()
        height, width = a.shape
        if self.scale < 1:
            size = (max(8, round(width * self.scale)), max(8, round(height * self.scale)))
            small = self._dis.calc(cv2.resize(a, size, interpolation=cv2.INTER_AREA),
                                   cv2.resize(b, size, interpolation=cv2.INTER_AREA), None)
            flow = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= width / size[0]
            flow[..., 1] *= height / size[1]
            return flow
        return self._dis.calc(a, b, None)


def translation_flow(shape: tuple[int, int], dx: float, dy: float) -> np.ndarray:
    """The backward flow of a scene moving by (dx, dy) pixels per frame: F = (−dx, −dy) everywhere."""
    flow = np.empty((*shape, 2), np.float32)
    flow[..., 0], flow[..., 1] = -dx, -dy
    return flow


@functools.lru_cache(maxsize=4)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False  # shared between calls
    return xs, ys


def _maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _grid(*flow.shape[:2])
    return xs + flow[..., 0], ys + flow[..., 1]


def inside(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: p + F(p) lies inside the frame (the previous frame saw that point)."""
    map_x, map_y = _maps(flow)
    height, width = flow.shape[:2]
    return (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)


#: Sampling for :func:`warp`, by name: OpenCV's interpolation flags.
INTERPOLATIONS = ("linear", "cubic", "lanczos")


def warp(image: np.ndarray, flow: np.ndarray, interpolation: str = "linear") -> np.ndarray:
    """W_F[image](p) = image(p + F(p)) for an (H, W) or (H, W, C) float32 array, sampled bilinearly,
    bicubically or with an 8×8 Lanczos kernel (the sharpest: it keeps most of the finest detail
    when a warp is repeated frame after frame); edge pixels repeated outside the frame (mask those
    with :func:`inside`)."""
    cv2 = import_cv2()
    modes = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
    if interpolation not in modes:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    map_x, map_y = _maps(flow)
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), map_x, map_y, modes[interpolation],
                     borderMode=cv2.BORDER_REPLICATE)


def squared_length(flow: np.ndarray) -> np.ndarray:
    """(H, W) |F(p)|² of an (H, W, 2) flow (written out: NumPy reduces a last axis of 2 slowly)."""
    return flow[..., 0] * flow[..., 0] + flow[..., 1] * flow[..., 1]


def reliable(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) bool: the forward–backward check of the module's docstring, and p + F(p) inside the frame."""
    returned = warp(forward, backward)
    error = squared_length(backward + returned)
    bound = 0.01 * (squared_length(backward) + squared_length(returned)) + 0.5
    return (error <= bound) & inside(backward)


__all__ = ["PRESETS", "INTERPOLATIONS", "import_cv2", "grey_levels", "FlowEstimator", "translation_flow", "inside",
           "warp", "squared_length", "reliable"]
