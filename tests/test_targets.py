"""The bundled clean-photograph statistics: what they are, when a fit may use them, and saying so."""

from __future__ import annotations

import torch

from dotrestore import settings
from dotrestore.cli import main
from dotrestore.codecs import load_codec
from dotrestore.ot.moments import Moments
from dotrestore.targets import BUNDLED_TARGET, read_bundled_target, write_bundled_target

from support import write_images


def test_the_bundle_is_kodak24_through_taef2_at_the_default_settings():
    bundled = read_bundled_target()
    assert bundled.n_images == 24 and bundled.images == [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert bundled.codec_id == load_codec("taef2").id
    assert bundled.settings == {name: settings.default(name) for name in ("patch_size", "lowpass_sigma", "split")}
    cov = bundled.moments.covariance
    assert cov.shape == (32 * 9, 32 * 9) and int(bundled.moments.count) > 24 * 1000
    assert float(torch.linalg.eigvalsh(cov).min()) > -1e-9  # a covariance
    readme = (BUNDLED_TARGET.parent / "README.md").read_text()
    assert "kodim01.png" in readme and "unrestricted" in readme and "MIT" in readme


def test_written_moments_read_back_exactly(tmp_path):
    m = Moments(4).update(torch.randn(100, 4, dtype=torch.float64))
    path = write_bundled_target(m, 3, "pixel:x", {"patch_size": 3}, ["a.png"], tmp_path / "t.safetensors")
    back = read_bundled_target(path)
    assert torch.equal(back.moments.covariance, m.covariance) and torch.equal(back.moments.mean, m.mean)
    assert (back.n_images, back.codec_id, back.images) == (3, "pixel:x", ["a.png"])


def test_fit_without_target_uses_the_bundle_and_says_so(tmp_path, capsys):
    src = write_images(tmp_path / "restored", 2, seed=0, size=(48, 48))
    op = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--vae", "taef2", "--device", "cpu", "--no-progress",
                 "-o", str(op)]) == 0
    out = capsys.readouterr()
    assert "bundled" in out.out and "kodak24_taef2" in out.err  # the summary and the log line
    assert main(["info", str(op)]) == 0
    assert "bundled: 24 clean photographs" in capsys.readouterr().out


def test_other_codecs_or_settings_need_a_target(tmp_path, capsys):
    src = write_images(tmp_path / "restored", 2, seed=0, size=(48, 48))
    for extra, words in ((["--vae", "pixel"], "codec"), (["--vae", "taef2", "--patch-size", "5"], "patch_size"),
                         (["--vae", "taef2", "--lowpass-sigma", "0"], "lowpass_sigma")):
        op = tmp_path / "op.safetensors"
        assert main(["fit", "--source", str(src), *extra, "--device", "cpu", "-o", str(op)]) == 2
        err = capsys.readouterr().err
        assert "--target" in err and words in err and not op.exists()
