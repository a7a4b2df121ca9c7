"""The α explorer's logic without a browser: cache, bit-identity with `dotrestore apply`, checks, fit, batch."""

from __future__ import annotations

import zipfile

import pytest
import torch

from dotrestore import DOT, cli
from dotrestore.errors import InputError, NotFittedError, OperatorFileError
from dotrestore.io import images as data
from dotrestore.serve import Explorer
from dotrestore.serve.cache import Entry, TransportCache, blend
from dotrestore.serve.jobs import batch_apply, collect_images, fit_operator, parse_alphas
from dotrestore.serve.session import alpha_grid, check_image_file

from serve_support import make_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("serve"))


@pytest.fixture()
def explorer(ws, tmp_path):
    ex = Explorer(ws["operator"], images=ws["images"], reference=ws["refs"], work_dir=tmp_path / "scratch")
    yield ex
    ex.close()


def test_cache_is_lru_and_blend_is_the_estimators_formula():
    cache = TransportCache(capacity=2)
    for key in "abc":
        cache.put(Entry(key=key, stem=key, x_star=torch.zeros(3, 2, 2), x0=torch.ones(3, 2, 2)))
    assert "a" not in cache and "b" in cache and "c" in cache
    cache.get("b")
    cache.put(Entry(key="d", stem="d", x_star=torch.zeros(3, 2, 2), x0=torch.ones(3, 2, 2)))
    assert "c" not in cache and "b" in cache
    x0, xs = torch.rand(3, 4, 4), torch.rand(3, 4, 4)
    assert torch.equal(blend(x0, xs, 1.0), xs) and torch.equal(blend(x0, xs, 0.0), x0)
    assert float(blend(x0, xs, 2.0).max()) <= 1 and float(blend(x0, xs, -1.0).min()) >= 0


def test_alpha_grid_spans_the_slider():
    grid = alpha_grid()
    assert grid[0] == -1.0 and grid[-1] == 2.0 and len(grid) == 61 and 0.5 in grid and 1.0 in grid


@pytest.mark.parametrize("alpha", [0.5, 1.0, -0.35])
def test_transform_and_download_match_apply_bit_for_bit(ws, explorer, tmp_path, alpha):
    image = ws["images"] / "test10.png"
    assert cli.main(["apply", str(ws["operator"]), str(image), "-o", str(tmp_path / "apply"), "--alpha", str(alpha)]) == 0
    applied = data.read_image(tmp_path / "apply" / "test10.png")
    api = explorer.transform_file(image, alpha)  # first call transports, the cached entry is reused below
    assert torch.equal(data.read_image(api), applied)
    entry = explorer.prepare(image)
    download = explorer.save_png(explorer.render(entry, alpha), entry.stem, alpha)
    # the download goes through save_image like apply: same pixels and the same bytes
    assert download.read_bytes() == (tmp_path / "apply" / "test10.png").read_bytes()
    if alpha == 1.0:
        assert torch.equal(applied, data.read_image(image))


def test_latent_interpolation_matches_apply(ws, explorer, tmp_path):
    image = ws["images"] / "test11.png"
    assert cli.main(["apply", str(ws["operator"]), str(image), "-o", str(tmp_path / "a"), "--alpha", "0.5",
                     "--interpolation", "latent"]) == 0
    entry = explorer.prepare(image)
    assert torch.equal(data.quantize(explorer.render(entry, 0.5, "latent")), data.read_image(tmp_path / "a" / "test11.png"))
    assert not torch.equal(explorer.render(entry, 0.5, "latent"), explorer.render(entry, 0.5, "pixel"))


def test_cache_reuses_x0_by_content(ws, explorer, tmp_path):
    image = ws["images"] / "test11.png"
    copy = tmp_path / "renamed.png"
    copy.write_bytes(image.read_bytes())
    first = explorer.prepare(image)
    assert explorer.prepare(copy) is first and len(explorer.cache) == 1


def test_reference_scores_and_curve(ws, explorer):
    entry = explorer.prepare(ws["images"] / "test10.png")
    explorer.attach_reference(entry, explorer.reference_for("test10"))
    scores = explorer.scores(entry, entry.at(1.0))
    assert scores["psnr"] > 15 and 0 < scores["ssim"] <= 1
    curve = explorer.mse_curve(entry)
    assert len(curve) == 61 and all(m > 0 for _, m in curve)
    # the reference must have the image's size
    with pytest.raises(InputError, match="test11.png"):
        explorer.attach_reference(entry, ws["refs"] / "test11.png")


def test_bad_inputs_are_refused_and_the_explorer_keeps_working(ws, explorer, tmp_path):
    with pytest.raises(InputError, match="corrupt.png"):
        explorer.transform_file(ws["corrupt"], 0.5)
    big = data.save_image(torch.rand(3, 40, 40), tmp_path / "big.png")
    with pytest.raises(InputError, match="over the limit"):
        check_image_file(big, max_pixels=1000)
    with pytest.raises(OperatorFileError):
        explorer.load_operator(ws["images"] / "test10.png")
    assert explorer.transform_file(ws["images"] / "test11.png", 0.5).is_file()  # still the old operator


def test_no_operator_means_a_clear_error(ws, tmp_path):
    ex = Explorer(work_dir=tmp_path / "s")
    with pytest.raises(NotFittedError, match="Fit tab"):
        ex.prepare(ws["images"] / "test10.png")
    with pytest.raises(InputError, match="--images"):
        Explorer(images=tmp_path / "missing")


def test_fit_makes_the_operator_current(ws, tmp_path):
    ex = Explorer(work_dir=tmp_path / "s")
    source = collect_images(None, str(ws["restored"]), "source", ex.max_pixels)
    target = collect_images(None, str(ws["clean"]), "target", ex.max_pixels)
    path = fit_operator(ex, source, target, codec="pixel", patch_size=3, paired=False, lowpass_sigma=0)
    assert path.is_file() and ex.dot is not None and ex.dot.codec_.id == "pixel"
    assert DOT.load(path).n_source_patches_ == ex.dot.n_source_patches_
    with pytest.raises(InputError, match="no clean image with the same stem"):
        fit_operator(ex, source, target, codec="pixel", patch_size=3, paired=True, lowpass_sigma=0)


def test_batch_writes_like_apply_and_never_overwrites(ws, explorer, tmp_path):
    images = collect_images(None, str(ws["images"]), "batch", explorer.max_pixels)
    out, n = batch_apply(explorer, images, parse_alphas("0, 0.5 1"), out_dir=str(tmp_path / "out"), as_zip=False)
    assert n == 6 and (out / "alpha_0.5" / "test10.png").is_file()
    assert cli.main(["apply", str(ws["operator"]), str(ws["images"]), "-o", str(tmp_path / "ref"), "--alpha", "0.5"]) == 0
    assert (out / "alpha_0.5" / "test11.png").read_bytes() == (tmp_path / "ref" / "test11.png").read_bytes()
    with pytest.raises(InputError, match="never overwrites"):
        batch_apply(explorer, images, [0.0], out_dir=str(out / "alpha_0"), as_zip=False)
    archive, n = batch_apply(explorer, images, [0.25], out_dir=None, as_zip=True)
    assert zipfile.ZipFile(archive).namelist() == ["test10.png", "test11.png"]
    with pytest.raises(InputError, match="not a number"):
        parse_alphas("0, half")


def test_app_builds_with_the_transform_api(ws, tmp_path):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
    from dotrestore.serve import build_app

    with_op = build_app(Explorer(ws["operator"], images=ws["images"], work_dir=tmp_path / "a"))
    names = [d.get("api_name") for d in with_op.config["dependencies"]]
    assert "transform" in names
    assert with_op.tabs.selected == "explore"
    assert build_app(Explorer(work_dir=tmp_path / "b")).tabs.selected == "fit"


def test_serve_command_binds_localhost_by_default():
    args = cli.build_parser().parse_args(["serve", "op.safetensors", "--images", "imgs"])
    assert (args.host, args.port, args.max_pixels) == ("127.0.0.1", 7860, 40_000_000)
    assert args.func.__module__ == "dotrestore.cli.serve"


def test_serve_command_refuses_a_bad_port(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--port", "70000"])
    assert info.value.code == 2 and "--port" in capsys.readouterr().err


def test_scratch_folder_stays_bounded(tmp_path):
    ex = Explorer(work_dir=tmp_path / "s")
    ex.MAX_SCRATCH = 3
    paths = [ex.scratch(f"f{i}.png") for i in range(5)]
    assert [p.parent.exists() for p in paths] == [False, False, True, True, True]


# ---------------------------------------------------------------------- --max-pixels on every path
def _every_path(ex, image, reference, tmp_path):
    """Explore (gallery folder + reference), upload/API (/transform), fit, batch: each returns or raises."""
    from dotrestore.serve.jobs import batch_apply, collect_images, fit_operator

    ex.gallery()
    entry = ex.prepare(image)  # what explore and upload do
    ex.attach_reference(entry, reference)
    ex.transform_file(image, 0.5)  # the /transform API
    listed = collect_images(None, str(image.parent), "restored", ex.max_pixels)
    fit_operator(ex, listed, listed, codec="pixel", patch_size=1, paired=False, lowpass_sigma=0)
    batch_apply(ex, listed, [0.5], out_dir=str(tmp_path / "batch"), as_zip=False)


def _pixel_workspace(root, side_h, side_w):
    from dotrestore import Runtime

    image = data.save_image(torch.rand(3, 8, 8).repeat(1, side_h // 8, side_w // 8), root / "images" / "big.png")
    reference = data.save_image(torch.rand(3, 8, 8).repeat(1, side_h // 8, side_w // 8), root / "refs" / "big.png")
    small = [data.save_image(torch.rand(3, 16, 16), root / f"fit{k}.png") for k in range(2)]
    op = DOT(codec="pixel", patch_size=1, lowpass_sigma=0, runtime=Runtime(max_pixels=None)).fit(small, small)
    return image, reference, op.save(root / "op.safetensors")


def test_every_serve_path_obeys_the_configured_max_pixels(tmp_path):
    """A limit below the default refuses on every path (a path that used the 40 MP default would accept)."""
    image, reference, op = _pixel_workspace(tmp_path, 24, 32)  # 768 pixels
    ex = Explorer(op, images=image.parent, reference=reference.parent, runtime={"max_pixels": 700, "progress": False},
                  work_dir=tmp_path / "s")
    checks = [lambda: ex.prepare(image), lambda: ex.transform_file(image, 0.5),
              lambda: ex.attach_reference(ex.cache.put(Entry("k", "big", torch.zeros(3, 24, 32), torch.zeros(3, 24, 32))),
                                          reference),
              lambda: collect_images(None, str(image.parent), "restored", ex.max_pixels),
              lambda: batch_apply(ex, [image], [0.5], out_dir=str(tmp_path / "b"), as_zip=False)]
    assert ex.gallery() == [image]  # listed; picking it is refused (prepare, above)
    for check in checks:
        with pytest.raises(InputError, match="over the limit of 700"):
            check()
    roomy = Explorer(op, images=image.parent, reference=reference.parent, runtime={"max_pixels": 800, "progress": False},
                     work_dir=tmp_path / "r")
    _every_path(roomy, image, reference, tmp_path / "ok")


@pytest.mark.slow
def test_serve_max_pixels_above_40_mp_accepts_a_42_mp_image_on_every_path(tmp_path):
    image, reference, op = _pixel_workspace(tmp_path, 6000, 7000)  # 42 MP
    with pytest.raises(InputError, match="over the limit"):
        Explorer(op, runtime={"progress": False}, work_dir=tmp_path / "d").prepare(image)  # the 40 MP default
    ex = Explorer(op, images=image.parent, reference=reference.parent,
                  runtime={"max_pixels": 50_000_000, "progress": False}, work_dir=tmp_path / "s")
    _every_path(ex, image, reference, tmp_path)
    assert (tmp_path / "batch" / "big.png").is_file()


def test_explorer_shows_x_stars_own_numbers_beside_alphas(ws, explorer):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
    from dotrestore.serve import handlers

    entry = explorer.prepare(ws["images"] / "test10.png")
    explorer.attach_reference(entry, ws["refs"] / "test10.png")
    state = {"key": entry.key, "path": str(ws["images"] / "test10.png"), "stem": "test10", "reference": None}
    text, figure = handlers.measures(explorer, state, 0.0, False)
    own = explorer.scores(entry, entry.x_star)
    assert f"**x\\* (α = 1):** PSNR {own['psnr']:.2f} dB" in text and "**α = 0:** PSNR" in text and figure is not None


def test_event_data_reaches_every_handler_that_asks_for_it(ws, tmp_path):
    """A handler with an ``evt`` parameter gets Gradio's event data only when Gradio can read the
    parameter's type hint (not through functools.partial): otherwise evt is None and a click fails."""
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
    import inspect

    import gradio as gr
    from gradio.utils import get_type_hints

    from dotrestore.serve import build_app

    app = build_app(Explorer(ws["operator"], images=ws["images"], work_dir=tmp_path))
    asking = [block.fn for block in app.fns.values() if block.fn is not None
              and "evt" in inspect.signature(block.fn).parameters]
    assert asking  # the gallery's select
    for fn in asking:
        assert issubclass(get_type_hints(fn).get("evt", type(None)), gr.EventData), fn
