"""The core acceptance run on real photographs and real TAEF2 weights (slow: ~2-4 min on 2 cores).

Fit on 10 CBSD68 images degraded (σ = 50/255 noise) and restored (Gaussian blur σ = 2) as
source and 10 other clean CBSD68 images as target, through the CLI; apply to restored
Kodak24 images; the Gaussian W2² between TAEF2 latent 3×3 patches of the outputs and of
the clean images must fall to ≤ 40 % of that of the restored inputs, and α = 1 must give
the input back within 1/255.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore import DOT
from dotrestore.cli import main
from dotrestore.experiment.degradations import parse_degradation
from dotrestore.io.images import list_images, read_image, save_image
from dotrestore.metrics import latent_fd
from dotrestore.restorers import parse_restorer
from dotrestore.tasks.apply import alpha_dirname

pytestmark = pytest.mark.slow


def degrade_and_restore(paths, folder, seed0):
    degrade = parse_degradation("noise:sigma=50")
    restore = parse_restorer("gaussian-blur:sigma=2")
    folder.mkdir()
    for i, path in enumerate(paths):
        clean = read_image(path)
        y = degrade(clean, torch.Generator().manual_seed(seed0 + i))
        save_image(restore(y, size=tuple(clean.shape[-2:])), folder / f"{path.stem}.png")
    return folder


def test_fit_apply_on_cbsd68_and_kodak(cbsd68_dir, kodak24_dir, taef2_dir, tmp_path, capsys):
    cbsd = list_images(cbsd68_dir)
    source = degrade_and_restore(cbsd[:10], tmp_path / "source", 0)
    target = cbsd[10:20]
    kodak = list_images(kodak24_dir)
    x_star = degrade_and_restore(kodak, tmp_path / "kodak_restored", 1000)

    op = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(source), "--target", *map(str, target), "--vae", str(taef2_dir), "-o", str(op)]) == 0
    assert "source: 10 images" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["apply", str(op), str(x_star), "-o", str(out), "--alpha", "0", "--alpha", "1"]) == 0

    dot = DOT.load(op)
    clean_latents = dot.encode(kodak)
    fd_restored = latent_fd(dot.encode(list_images(x_star)), clean_latents)
    fd_dot = latent_fd(dot.encode(list_images(out / alpha_dirname(0))), clean_latents)
    print(f"latent W2^2 to clean Kodak: restored {fd_restored:.3f}, DOT alpha=0 {fd_dot:.3f}")
    assert fd_dot <= 0.4 * fd_restored, (fd_dot, fd_restored)

    for path in kodak:
        back = np.asarray(Image.open(out / alpha_dirname(1) / f"{path.stem}.png"), dtype=int)
        given = np.asarray(Image.open(x_star / f"{path.stem}.png"), dtype=int)
        assert np.abs(back - given).max() <= 1
