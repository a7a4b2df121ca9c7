"""ComfyUI nodes over dotrestore: load an operator, apply it at α, fit one from two image sets.

ComfyUI's IMAGE is a (B, H, W, 3) float32 tensor in [0, 1]; dotrestore works on (B, 3, H, W).
Nothing here imports ComfyUI: a node is a plain class with ``INPUT_TYPES`` (a classmethod),
``RETURN_TYPES``, ``FUNCTION`` and ``CATEGORY``, which is all ComfyUI reads. *DOT apply*
transports one image at a time through :meth:`DOT.iter_alphas <dotrestore.DOT.iter_alphas>`,
the call ``dotrestore apply`` makes, so its output equals the CLI's pixel for pixel after
8-bit rounding. The operator travels between nodes as the custom type ``DOT_OPERATOR``.
"""

from __future__ import annotations

from pathlib import Path

import torch

CATEGORY = "dotrestore"
OPERATOR = "DOT_OPERATOR"


def to_dot(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE (B, H, W, 3) → (B, 3, H, W) float32 in [0, 1] on the CPU."""
    if image.dim() != 4 or image.shape[-1] != 3:
        raise ValueError(f"expected an IMAGE of shape (B, H, W, 3), got {tuple(image.shape)}")
    return image.detach().float().cpu().permute(0, 3, 1, 2).clamp(0, 1).contiguous()


def to_comfy(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → ComfyUI IMAGE (B, H, W, 3) float32 on the CPU."""
    return images.detach().float().cpu().permute(0, 2, 3, 1).contiguous()


def _runtime(device: str):
    from ..runtime import Runtime

    return Runtime(device=None if device == "auto" else device, progress=False)


class LoadDOTOperator:
    """An operator file written by ``dotrestore fit`` (or *DOT fit*)."""

    RETURN_TYPES = (OPERATOR,)
    RETURN_NAMES = ("operator",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"operator_path": ("STRING", {"default": "op.safetensors"}),
                             "device": (["auto", "cpu", "cuda"], {"default": "auto"})}}

    def load(self, operator_path: str, device: str = "auto"):
        from ..estimator import DOT

        return (DOT.load(Path(operator_path).expanduser(), runtime=_runtime(device)),)


class DOTApply:
    """x̂α = (1 − α)·x̂0 + α·x* for every image of the batch (α = 1: the input itself)."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"operator": (OPERATOR,), "image": ("IMAGE",),
                             "alpha": ("FLOAT", {"default": 0.0, "min": -1.0, "max": 2.0, "step": 0.05})}}

    def apply(self, operator, image: torch.Tensor, alpha: float):
        x_star = to_dot(image)
        # one image at a time, as `dotrestore apply` does by default: the same bits
        outs = [dict(operator.iter_alphas(x_star[i:i + 1], [float(alpha)]))[float(alpha)] for i in range(len(x_star))]
        return (to_comfy(torch.cat(outs)),)


class DOTFit:
    """Fit an operator: restored images (source) and clean photographs (target), batches or folders."""

    RETURN_TYPES = (OPERATOR,)
    RETURN_NAMES = ("operator",)
    FUNCTION = "fit"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"codec": ("STRING", {"default": "auto"}),
                             "patch_size": ("INT", {"default": 3, "min": 1, "max": 9, "step": 2}),
                             "lowpass_sigma": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 64.0, "step": 0.5}),
                             "device": (["auto", "cpu", "cuda"], {"default": "auto"})},
                "optional": {"source": ("IMAGE",), "target": ("IMAGE",),
                             "source_folder": ("STRING", {"default": ""}),
                             "target_folder": ("STRING", {"default": ""}),
                             "save_path": ("STRING", {"default": ""})}}

    def fit(self, codec: str, patch_size: int, lowpass_sigma: float, device: str = "auto", source=None,
            target=None, source_folder: str = "", target_folder: str = "", save_path: str = ""):
        from ..estimator import DOT
        from ..tasks import fit as fitting

        dot = DOT(codec=codec, patch_size=int(patch_size), lowpass_sigma=float(lowpass_sigma),
                  runtime=_runtime(device))
        fitting.fit(dot, _images(source, source_folder, "source"), _images(target, target_folder, "target"))
        if save_path:
            dot.save(Path(save_path).expanduser())
        return (dot,)


def _images(batch, folder: str, role: str):
    if batch is not None and folder:
        raise ValueError(f"give the {role} images as an IMAGE batch or a folder, not both")
    if batch is not None:
        return to_dot(batch)
    if folder:
        return folder
    raise ValueError(f"DOT fit needs {role} images: connect an IMAGE batch or name a folder")


NODE_CLASS_MAPPINGS = {"LoadDOTOperator": LoadDOTOperator, "DOTApply": DOTApply, "DOTFit": DOTFit}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadDOTOperator": "Load DOT operator", "DOTApply": "DOT apply", "DOTFit": "DOT fit"}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "LoadDOTOperator", "DOTApply", "DOTFit",
           "to_dot", "to_comfy"]
