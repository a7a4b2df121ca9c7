"""Regenerate the bundled target statistics (src/dotrestore/targets/data/kodak24_taef2.safetensors).

The 24 Kodak photographs (Kodak released them for unrestricted use) encoded by the bundled
TAEF2 codec at the default method settings, in float32 on the CPU: their latent-patch moments.

    python benchmarks/bundled_target.py [KODAK_FOLDER]   # default ../shared/data/kodak24
"""

from __future__ import annotations

import sys
from pathlib import Path

from dotrestore import DOT, Runtime
from dotrestore.io.images import list_images
from dotrestore.targets import SETTINGS_USED, write_bundled_target


def main(folder: str) -> None:
    images = list_images([folder], None)
    dot = DOT(codec="taef2", runtime=Runtime(device="cpu", dtype="float32", progress=True))
    dot.partial_fit(images, role="target")
    state = dot.state_.target
    settings = {name: getattr(dot, name) for name in SETTINGS_USED}
    path = write_bundled_target(state.moments, state.n_images, dot.codec_.id, settings, [p.name for p in images])
    print(f"wrote {path}: {state.n_images} images, {state.n_patches} patches, D = {dot.dim_}, {settings}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak24"
    main(sys.argv[1] if len(sys.argv) > 1 else str(default))
