"""The experiment's measurements as streaming metric objects, one set per table row.

A row is a method at an α: ``("dot-detail", 0.5)``, ``("restored", None)``... For each row
:class:`Evaluation` keeps only metric states (sums and patch moments, FID/KID features), never
the images, and :meth:`Evaluation.rows` merges them across processes and turns them into the
table. Every value is computed on 8-bit quantized images, as the saved PNGs hold them.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from .. import metrics
from ..metrics import PatchMoments, PerImageMean, frechet_distance
from ..runtime import parallel

logger = logging.getLogger(__name__)

#: latent_fd compares 3×3 latent patches whatever patch size the operator uses (Adrai et al.'s measure).
LATENT_FD_PATCH = 3
_ENCODE_CHUNK = 4  # images encoded together: bounds activation memory of VAEs on big images


class RowMetrics:
    """Per-image means (:data:`dotrestore.metrics.PER_IMAGE_METRICS`) and the patch Gaussians of one row."""

    def __init__(self, perceptual: dict):
        self.means = {name: PerImageMean(name, fn) for name, fn in metrics.PER_IMAGE_METRICS}
        self.latent = PatchMoments(LATENT_FD_PATCH)
        self.pixel = PatchMoments(7, metrics.PATCH_FD_STRIDE)
        self.perceptual = perceptual

    def update(self, image: torch.Tensor, clean: torch.Tensor, latent: torch.Tensor, values: dict | None) -> dict:
        """Add one image (with its latent); ``values`` are its per-image values when already
        measured (an identical picture of another row), else they are computed. Returns them."""
        if values is None:
            values = {name: m.fn(image, clean) for name, m in self.means.items()}
        for name, m in self.means.items():
            m.total += values[name]
            m.count += 1
        self.latent.update(latent)
        self.pixel.update(image)
        for name, metric in self.perceptual.items():
            if name == "lpips":
                metric.update(image, clean)
            else:
                metric.update(image, real=False)
        return values


def _fingerprint(image: torch.Tensor) -> tuple:
    """Shape and a digest of the values: equal images have equal fingerprints."""
    values = image.detach().cpu().contiguous().numpy()
    return tuple(image.shape), str(image.dtype), hashlib.blake2b(values.tobytes(), digest_size=16).digest()


class Evaluation:
    """Streaming evaluation of every row against the clean test images."""

    def __init__(self, keys: list[tuple], codec, perceptual_names: list[str], feature=None):
        self.codec = codec
        self.keys = keys
        make = lambda: {n: metrics.perceptual_metric(n, codec.device, feature) for n in perceptual_names}  # noqa: E731
        self.rows_ = {k: RowMetrics(make()) for k in keys}
        self.clean_latent = PatchMoments(LATENT_FD_PATCH)
        self.clean_pixel = PatchMoments(7, metrics.PATCH_FD_STRIDE)
        self.clean_sets = {n: metrics.perceptual_metric(n, codec.device, feature)
                           for n in perceptual_names if n != "lpips"}
        self.per_image: list[dict] = []

    def encode(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Codec latents (1, C, h, w) of same-size images, a few at a time."""
        out = []
        for i in range(0, len(images), _ENCODE_CHUNK):
            batch = torch.stack(images[i:i + _ENCODE_CHUNK]).to(self.codec.device)
            out.extend(z[None] for z in self.codec.encode(batch))
        return out

    def update(self, index: int, stem: str, clean: torch.Tensor, images: dict, latents: dict) -> dict:
        """Add one test image: ``images[key]`` its rows' pictures, ``latents`` {slot: E(picture)}.

        Identical pictures (α = 1 is x* itself) are encoded and measured once. Returns the
        per-image values per key (for collage captions).
        """
        distinct: list[torch.Tensor] = [clean]
        by_print: dict[tuple, list[int]] = {_fingerprint(clean): [0]}
        slot = {}
        for key, img in images.items():  # linear in the rows: thousands of α compare by fingerprint first
            candidates = by_print.setdefault(_fingerprint(img), [])
            same = next((j for j in candidates if torch.equal(distinct[j], img)), None)
            if same is None:
                distinct.append(img)
                same = len(distinct) - 1
                candidates.append(same)
            slot[key] = same
        known = {s: latents[k] for k, s in slot.items() if k in latents}
        missing = [j for j in range(len(distinct)) if j not in known]
        known.update(zip(missing, self.encode([distinct[j] for j in missing])))
        self.clean_latent.update(known[0])
        self.clean_pixel.update(clean)
        for metric in self.clean_sets.values():
            metric.update(clean, real=True)
        measured: dict = {}
        captions = {}
        for key, img in images.items():
            s = slot[key]
            measured[s] = self.rows_[key].update(img, clean, known[s], measured.get(s))
            captions[key] = measured[s]
            self.per_image.append({"index": index, "image": stem, "method": key[0], "alpha": key[1], **measured[s]})
        return captions

    def rows(self) -> tuple[list[dict], list[dict], dict[str, str]]:
        """(table rows, per-image rows, failed perceptual metrics with reasons). Collective."""
        self.clean_latent.sync()
        self.clean_pixel.sync()
        reasons: dict[str, str] = {}
        rows = []
        for key in self.keys:
            r = self.rows_[key]
            for m in r.means.values():
                m.sync()
            r.latent.sync()
            r.pixel.sync()
            row = {"method": key[0], "alpha": key[1], **{n: m.compute() for n, m in r.means.items()},
                   "latent_fd": frechet_distance(r.latent, self.clean_latent),
                   "patch_fd": frechet_distance(r.pixel, self.clean_pixel),
                   "lpips": None, "fid": None, "kid": None, "n_images": int(float(r.means["mse"].count))}
            for name, metric in r.perceptual.items():
                try:
                    row[name] = metric.compute() if name == "lpips" else metric.compute(self.clean_sets[name])
                except Exception as exc:  # a metric failing must not sink the experiment that asked for it
                    reasons[name] = f"{name.upper()} failed: {type(exc).__name__}: {exc}"
                    logger.warning("%s", reasons[name])
            rows.append(row)
        gathered = [row for part in parallel.gather_objects(self.per_image) for row in part]
        order = {k: i for i, k in enumerate(self.keys)}
        gathered.sort(key=lambda r: (r["index"], order[(r["method"], r["alpha"])]))
        for r in gathered:
            del r["index"]
        return rows, gathered, reasons
