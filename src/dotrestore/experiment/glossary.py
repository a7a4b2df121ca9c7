"""What the report says in words: every column of its table, and why a row breaks a bound it quotes.

Each definition is one line a reader can check against the code that computes it
(:mod:`dotrestore.metrics`); the README's "Reading the report" says the same.
"""

from __future__ import annotations

#: column -> (what it is, which way is better); ``{p}`` is the patch side of the operator
COLUMNS: dict[str, tuple[str, str]] = {
    "method": ("`restored` is the restorer's output x* (the reference row), `dot-<variant>` DOT at one α "
               "(`detail`: only details finer than the low-pass are transported; `whole`: whole images, as in "
               "Adrai et al.; `mixK`: a K-component Gaussian mixture), `degraded` the degraded input y", ""),
    "α": ("the blend x̂α = (1 − α)·x̂0 + α·x*: 1 is x* itself, 0 the perception end, α < 0 and α > 1 "
          "extrapolate", ""),
    "psnr": ("PSNR = 10·log10(1 / MSE) in dB, images in [0, 1] (data range 1.0), mean of per-image values",
             "higher is better"),
    "ssim": ("structural similarity (Wang et al. 2004; Gaussian window of 11 taps, σ = 1.5, per channel), "
             "mean of per-image values", "higher is better"),
    "mse": ("mean squared error per pixel and channel against the clean image, intensities in [0, 1]",
            "lower is better"),
    "latent_fd": ("Fréchet distance (Gaussian W2²) between the {p}×{p} latent patches of the outputs and of the "
                  "clean test images, in the codec's latent space: the measure DOT itself minimises",
                  "lower is more realistic"),
    "patch_fd": ("the same Fréchet distance on 7×7 RGB pixel patches (taken at stride 4): realism judged "
                 "without the codec", "lower is more realistic"),
    "spectrum_distance": ("mean |Δ log10 power| between the radially averaged power spectra of the output's and "
                          "the clean image's grey images, over the high-frequency half of the rings: 0 is the clean "
                          "image's spectrum, 1 ten times too much or too little fine-scale power (blur is too "
                          "little, noise and over-sharpening too much)", "lower is better"),
    "halo_measure": ("mean overshoot beyond the clean image's local min/max (per channel, 13×13 window) within "
                     "3 px of its strong edges (grey gradient ≥ 0.1), in [0, 1] units: light or dark fringes "
                     "that the clean picture does not have", "lower is better"),
    "lpips": ("LPIPS (Zhang et al. 2018, AlexNet features): learned perceptual distance to the clean image",
              "lower is better"),
    "fid": ("FID: Fréchet distance between Inception-v3 features of the outputs and of the clean images",
            "lower is better"),
    "kid": ("KID: kernel (MMD) distance between the same Inception features, unbiased for small sets",
            "lower is better"),
}


def definitions(shown: list[str], patch_size: int) -> list[str]:
    """Markdown bullets defining each column in ``shown`` (table order), method and α first."""
    lines = []
    for name in ["method", "α", *shown]:
        what, better = COLUMNS[name]
        head = name.upper() if name in ("lpips", "fid", "kid") else name
        lines.append(f"- **{head}**: {what.format(p=patch_size)}" + (f" ({better})." if better else "."))
    return lines


#: The theory's bound on α = 0's MSE, as a multiple of x*'s (Freirich et al. 2021), quoted by the report.
MSE_BOUND = 2.0


def bound_notes(rows: list[dict], variants: dict, data: dict) -> list[str]:
    """One sentence for each DOT variant whose α = 0 is beyond the ×2 MSE bound the report quotes: why.

    The bound is for the exact OT map from an MMSE restorer. Whole-image transport fitted on a
    few photographs also moves their colours (the patch Gaussians of a few scenes differ mostly
    in colour), which the bound does not allow for; a detail map fitted from few images paints
    detail that is not the clean image's own.
    """
    ref = next((r for r in rows if r["method"] == "restored"), None)
    if ref is None or not ref["mse"] > 0:
        return []
    counts, pairing = data.get("counts", {}), data.get("split", "")
    fitted = f"{counts.get('source', '?')} + {counts.get('target', '?')} {pairing} images".replace("  ", " ")
    notes = []
    for method in dict.fromkeys(r["method"] for r in rows if r["method"].startswith("dot")):
        zero = next((r for r in rows if r["method"] == method and r["alpha"] == 0.0), None)
        if zero is None or zero["mse"] <= MSE_BOUND * ref["mse"]:
            continue
        if not variants.get(method, {}).get("lowpass_sigma"):
            why = (f"whole-image transport fitted on {fitted} moves colours, not only detail: the latent patch "
                   "Gaussians of a few photographs differ mostly in their colours and scenes, and the map carries "
                   "that difference onto every test image (the detail variant keeps x*'s colours)")
        else:
            why = (f"the bound is for the exact optimal-transport map from an MMSE restorer, and this map is a "
                   f"Gaussian fitted on {fitted}: the detail it paints is plausible, not the clean image's own")
        notes.append(f"**{_dot_name(method)} at α = 0 is beyond the theory's ×2 bound**: its MSE is "
                     f"×{zero['mse'] / ref['mse']:.1f} x*'s ({zero['psnr'] - ref['psnr']:+.1f} dB) because {why}.")
    return notes


def _dot_name(method: str) -> str:
    return "DOT" if method == "dot" else f"DOT {method[4:]}"


__all__ = ["COLUMNS", "MSE_BOUND", "definitions", "bound_notes"]
