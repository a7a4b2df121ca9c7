"""The fitting engine behind :meth:`DOT.partial_fit`: one pass over the images for several DOTs.

Every image of the stream is read once, and encoded once per distinct codec input: DOTs that
share a codec and a low-pass (e.g. the ``detail`` and ``mix4`` variants of an experiment) share
E(x − L(x) + ½); a whole-image DOT (σ = 0) encodes x itself. Each DOT then takes its own
overlapping latent patches into its float64 :class:`~dotrestore.ot.gaussian.Moments` (and, for
a mixture, its patch reservoir). Under torchrun the call is collective: the float64 sums of
every process are added exactly before each DOT refits its Gaussians and map.
"""

from __future__ import annotations

import torch

from ..errors import ImageTooSmallError
from ..ot import gaussian
from ..ot.patches import extract_patches
from . import parallel, pipeline


def encoding_key(dot) -> tuple:
    """What decides a DOT's codec input: its codec object and low-pass (σ, filter)."""
    sigma, split = dot.resolved.lowpass_sigma, dot.resolved.split
    return id(dot.codec_), sigma, (split.split("+")[0] if sigma else None)


def latent_patches(z: torch.Tensor, p: int, name: str, size) -> torch.Tensor:
    """The p×p patches of latent z (1, C, h, w); ImageTooSmallError naming the image when it has none."""
    patches = extract_patches(z, p)
    if patches.shape[0] == 0:
        raise ImageTooSmallError(name, f"image is {size[0]}x{size[1]} pixels, too small for one {p}x{p} "
                                 f"latent patch (its latent is {z.shape[-2]}x{z.shape[-1]})")
    return patches


def partial_fit_together(dots: list, images, role: str, *, total: int | None = None, desc: str | None = None):
    """Accumulate the ``role`` statistics of ``images`` into every DOT of ``dots``; refit each.

    ``images`` is anything :meth:`DOT.partial_fit` accepts; it is iterated once. ``total`` (the
    number of images of a stream, when known) and ``desc`` name the progress bar. The DOTs must
    read the images with the first DOT's runtime (batching, workers, progress); returns ``dots``.
    """
    for dot in dots:
        dot.start_fit(role)
    first = dots[0]
    groups: dict[tuple, list] = {}
    for dot in dots:
        groups.setdefault(encoding_key(dot), []).append(dot)
    moments = [gaussian.Moments(dot.dim_) for dot in dots]
    index = {id(dot): k for k, dot in enumerate(dots)}
    count = 0

    def accumulate() -> None:
        nonlocal count
        run = first.resolved.runtime
        stream, _, known = pipeline.image_batches(images, f"{role} images", run, shard=True)
        with run.progress_bar(known if known is not None else total, desc or f"fitting · encoding {role}") as bar:
            for batch in stream:
                for group in groups.values():
                    with group[0].codec_.statistics_precision():  # fits encode in float32 under --dtype auto
                        latents = group[0].encode_batch(batch.images)  # one encoding per distinct codec input
                    for name, z in zip(batch.names, latents):
                        for dot in group:
                            patches = latent_patches(z[None], dot.resolved.patch_size, name, batch.images.shape[-2:])
                            moments[index[id(dot)]].update(patches)
                            if dot.resolved.mixture > 1:  # EM needs the patches themselves
                                dot.patch_reservoir(role).update(patches)
                count += len(batch)
                bar.update(len(batch))

    parallel.run_checked(accumulate)
    n_images = int(parallel.all_reduce_sum(torch.tensor(float(count), dtype=torch.float64)))
    for dot, accumulated in zip(dots, moments):
        role_state = dot.state_.role(role)
        role_state.moments = role_state.moments or gaussian.Moments(dot.dim_)
        role_state.moments.merge(accumulated.sync(parallel))
        role_state.n_images += n_images
        dot.refit()
    return dots


__all__ = ["partial_fit_together", "encoding_key"]
