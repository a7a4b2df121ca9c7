"""The CUDA path agrees with the CPU path. Skipped where no CUDA device is present (CI)."""

from __future__ import annotations

import pytest
import torch

from dotrestore import DOT
from dotrestore.codecs import codec_from_diffusers, load_codec
from dotrestore.ot.patches import overlap_add, transport_latent, transport_latent_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _problem(c: int, p: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    d = c * p * p
    a = torch.randn(d, d, generator=g) / d**0.5 + torch.eye(d)
    return a, torch.randn(d, generator=g), torch.randn(d, generator=g)


@pytest.mark.parametrize("p", [1, 3, 5])
@pytest.mark.parametrize("weighting", ["uniform", "gaussian"])
def test_transport_on_cuda_equals_cpu_reference(p, weighting):
    a, ms, mt = _problem(4, p, seed=p)
    z = torch.randn(2, 4, 37, 23, generator=torch.Generator().manual_seed(1))
    ref = transport_latent_reference(z.double(), a.double(), ms.double(), mt.double(), p, weighting)
    got = transport_latent(z.to(CUDA), a.to(CUDA), ms.to(CUDA), mt.to(CUDA), p, weighting).cpu()
    assert torch.allclose(got.double(), ref, atol=1e-4, rtol=1e-4)


def test_fold_path_on_cuda_equals_slice_path_on_cpu():
    y = torch.randn(2, 4 * 9, 19, 21, generator=torch.Generator().manual_seed(2))
    cpu = overlap_add(y, 4, 3, use_fold=False)
    gpu = overlap_add(y.to(CUDA), 4, 3, use_fold=True).cpu()
    assert torch.allclose(gpu, cpu, atol=1e-5)


def test_stochastic_transport_noise_on_cuda_has_the_right_covariance():
    d = 4
    l_mat = torch.diag(torch.tensor([0.5, 1.0, 2.0, 0.0]))
    z = torch.zeros(1, 4, 256, 256, device=CUDA)
    out = transport_latent(z, torch.zeros(d, d, device=CUDA), torch.zeros(d, device=CUDA),
                           torch.zeros(d, device=CUDA), 1, noise_sqrt=l_mat.to(CUDA),
                           generator=torch.Generator(device=CUDA).manual_seed(0))
    std = out.flatten(2).std(-1)[0].cpu()
    assert torch.allclose(std, torch.tensor([0.5, 1.0, 2.0, 0.0]), atol=0.02)


def _tiny_kl():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                         norm_num_groups=8)


def _images(n: int, seed: int, size=(40, 56)):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, *size, generator=g) for _ in range(n)]


def test_dot_fitted_on_cuda_equals_dot_fitted_on_cpu():
    """Same statistics, operator and outputs (float32 kernels: cuDNN vs CPU conv)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    src, tgt, test = _images(3, 0), _images(3, 1), _images(2, 2)
    model = _tiny_kl()
    cpu = DOT(codec=codec_from_diffusers(model, name="tiny"), runtime={"device": "cpu"}).fit(src, tgt)
    gpu = DOT(codec=codec_from_diffusers(_tiny_kl(), name="tiny").to(CUDA), runtime={"device": "cuda"}).fit(src, tgt)
    assert cpu.codec_.id == gpu.codec_.id
    assert torch.allclose(gpu.mean_source_.cpu(), cpu.mean_source_, atol=1e-4)
    assert torch.allclose(gpu.cov_target_.cpu(), cpu.cov_target_, atol=1e-4, rtol=1e-3)
    assert torch.allclose(gpu.operator_.cpu(), cpu.operator_, atol=1e-3, rtol=1e-3)
    batch = torch.stack(test)
    out_cpu = dict(cpu.iter_alphas(batch, [0.0, 0.5]))
    out_gpu = dict(gpu.iter_alphas(batch.to(CUDA), [0.0, 0.5]))
    for a in (0.0, 0.5):
        for c, g in zip(out_cpu[a], out_gpu[a]):
            assert g.is_cuda
            assert (g.cpu() - c).abs().max() < 2e-3


def test_operator_file_written_on_cuda_loads_on_cpu(tmp_path):
    # two instances of the same weights: a codec moves its module, so they must not share one
    gpu = DOT(codec=codec_from_diffusers(_tiny_kl(), name="tiny").to(CUDA), runtime={"device": "cuda"}).fit(
        _images(2, 0), _images(2, 1))
    path = gpu.save(tmp_path / "op.safetensors")
    cpu = DOT.load(path, codec=codec_from_diffusers(_tiny_kl(), name="tiny"), runtime={"device": "cpu"})
    assert torch.equal(cpu.operator_, gpu.operator_.cpu())
    x = _images(1, 3)[0]
    assert (cpu.transform(x).cpu() - gpu.transform(x).cpu()).abs().max() < 2e-3


def test_taef2_on_cuda_matches_cpu(taef2_dir, kodak24_dir):
    from dotrestore.io.images import list_images, read_image

    x = read_image(list_images(kodak24_dir)[0])[None]
    cpu = load_codec(str(taef2_dir), device="cpu")
    gpu = load_codec(str(taef2_dir), device="cuda")
    z_cpu, z_gpu = cpu.encode(x), gpu.encode(x.to(CUDA))
    assert z_gpu.is_cuda
    assert (z_gpu.cpu() - z_cpu).abs().max() < 1e-2 * z_cpu.abs().max()
    rec_cpu, rec_gpu = cpu.decode(z_cpu, size=x.shape[-2:]), gpu.decode(z_cpu.to(CUDA), size=x.shape[-2:]).cpu()
    assert (rec_gpu - rec_cpu).abs().mean() < 1e-3


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_codec_is_faithful_on_kodak(dtype, kodak24_dir, taef2_dir):
    from pathlib import Path

    from dotrestore.io.images import read_image

    files = sorted(Path(kodak24_dir).glob("*.png"))
    dot = DOT(codec=str(taef2_dir), shrinkage="oas", runtime={"device": "cuda"}).fit(files[:5], files[5:10])
    images = torch.stack([read_image(f) for f in files[10:]]).to(CUDA)
    reference = dot.transform(images, alpha=0.0)
    dot.codec_.configure(dtype=dtype)
    assert dot.codec_.dtype == getattr(torch, dtype)
    out = dot.transform(images, alpha=0.0)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    psnr = -10 * torch.log10(((out - reference) ** 2).mean())
    assert float(psnr) >= 40.0


def test_tiled_decode_stays_within_max_memory(taef2_dir):
    codec = load_codec(str(taef2_dir), device="cuda", max_memory="512MiB")
    z = torch.randn(1, codec.latent_channels, 384, 384, device=CUDA)  # a 3072x3072 image
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = codec.decode(z)
    peak = torch.cuda.max_memory_allocated() - base
    assert out.shape[-2:] == (3072, 3072)
    assert peak <= 512 * 2**20 + 4 * out.numel() * 4  # the budget plus the full-size output buffers
