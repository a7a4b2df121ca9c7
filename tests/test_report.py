"""The report reads its numbers right: x*'s values beside every α row, the non-MMSE explanation
exactly when the numbers call for it, the before/after first, and a curve that marks x* and the
lowest-MSE α. Rows are constructed here, so each case is known; no codec runs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore.experiment import figures, report

NON_MMSE = "not the MMSE estimator"


def _row(method, alpha, mse, psnr, ssim=0.7, latent_fd=1.0, patch_fd=0.5):
    return {"method": method, "alpha": alpha, "mse": mse, "psnr": psnr, "ssim": ssim, "latent_fd": latent_fd,
            "patch_fd": patch_fd, "spectrum_distance": 0.3, "halo_measure": 1e-3, "lpips": None, "fid": None,
            "kid": None, "n_images": 6}


def _rows(dot: dict, x_star=(0.0045, 23.30, 0.70, 1.0)) -> list[dict]:
    """``dot`` {α: (mse, psnr, ssim, latent_fd)} for dot-detail; α = 1 is x* itself."""
    rows = [_row("dot-detail", a, *v) for a, v in sorted(dot.items())]
    rows.append(_row("dot-detail", 1.0, *x_star))
    return rows + [_row("restored", None, *x_star), _row("degraded", None, 0.04, 14.0, 0.2, 5.0, 3.0)]


#: α = 0 beats x* on PSNR and MSE is lowest inside (0, 1): a restorer far from the MMSE estimator.
BLUR_LIKE = _rows({0.0: (0.0040, 23.99, 0.72, 0.40), 0.3: (0.0036, 24.40, 0.74, 0.55)})
#: MSE lowest at x* and rising to α = 0 (×1.33 ≤ 2), PSNR falling: what the theory expects of an MMSE restorer.
MMSE_LIKE = _rows({0.0: (0.0060, 22.20, 0.66, 0.40), 0.3: (0.0050, 22.90, 0.68, 0.55)})
#: MSE lowest at α = 0.3 while α = 0 has a lower PSNR than x*: called for by the MSE alone.
MSE_ONLY = _rows({0.0: (0.0050, 22.90, 0.66, 0.40), 0.3: (0.0042, 23.50, 0.70, 0.55)})


def test_reading_of_the_numbers():
    blur = report.tradeoff_reading(BLUR_LIKE, "dot-detail")
    assert blur["non_mmse"] and blur["psnr_beats"] and blur["mse_beats"] and blur["lowest"] == 0.3
    mmse = report.tradeoff_reading(MMSE_LIKE, "dot-detail")
    assert not mmse["non_mmse"] and mmse["lowest"] == 1.0
    mse_only = report.tradeoff_reading(MSE_ONLY, "dot-detail")
    assert mse_only["non_mmse"] and not mse_only["psnr_beats"] and mse_only["lowest"] == 0.3
    assert figures.lowest_mse_alpha(BLUR_LIKE, "dot-detail") == 0.3


def test_explanation_appears_exactly_when_alpha_zero_beats_x_star():
    text = report.tradeoff_text(BLUR_LIKE, "dot-detail", "gaussian-blur:sigma=2")
    assert NON_MMSE in text and "23.99 vs 23.30 dB" in text and "gaussian-blur:sigma=2" in text
    assert "α = 0.3" in text and "MSE rises from 0.0036 to 0.004" in text and "latent_fd falls from 0.55 to 0.4" in text
    text = report.tradeoff_text(MMSE_LIKE, "dot-detail", "gaussian-blur:sigma=2")
    assert NON_MMSE not in text
    assert "MSE rises from 0.0045 to 0.006 (×1.33" in text and "latent_fd falls from 1 to 0.4" in text
    text = report.tradeoff_text(MSE_ONLY, "dot-detail", None)
    assert NON_MMSE in text and "MSE is lowest at α = 0.3" in text and "higher PSNR" not in text


def test_table_puts_x_star_first_and_its_values_beside_every_dot_row():
    table = report.markdown_table(BLUR_LIKE).splitlines()
    body = table[2:]
    assert body[0].startswith("| **restored x\\* (reference)** |  | 23.30 | 0.7000 | 0.0045 | 1 |")
    dot_rows = [line for line in body if line.startswith("| DOT detail")]
    assert len(dot_rows) == 3 and body[-1].startswith("| degraded y")
    zero = next(line for line in dot_rows if line.startswith("| DOT detail | 0 |"))
    # PSNR and SSIM as differences from x*'s, distances as ratios to x*'s
    assert "23.99 (+0.69)" in zero and "0.7200 (+0.0200)" in zero and "0.004 (×0.89)" in zero and "0.4 (×0.40)" in zero
    for line in dot_rows:  # every cell of every DOT row carries its comparison with x*
        cells = [c.strip() for c in line.strip("|").split("|")][2:]
        assert all(re.search(r"\((?:[+-]\d|×)", c) for c in cells), line
    one = next(line for line in dot_rows if line.startswith("| DOT detail | 1 |"))
    assert "23.30 (+0.00)" in one and "(×1.00)" in one


def _info(hero: dict | None) -> dict:
    op = {"w2_squared": 1.0, "patch_size": 3, "lowpass_sigma": 4.0, "split": "guided", "mixture": 1, "dim": 288,
          "n_source_patches": 100, "n_target_patches": 100, "shrinkage_used": "none", "stochastic": False}
    return {"codec": {"id": "taesd:taef2", "spec": "taef2", "latent_channels": 32, "downscale": 8, "device": "cpu"},
            "operator": op, "variants": {"dot-detail": {"operator": "operator.safetensors", **op}},
            "data": {"clean": "clean", "test_clean": None, "restored": None, "degradation": "noise:sigma=50",
                     "restorer": "gaussian-blur:sigma=2", "split": "paired",
                     "counts": {"clean_images": 30, "test_clean_images": 0, "restored_images": 0, "source": 24,
                                "target": 24, "test": 6},
                     "image_sizes": ["192x192"]},
            "skipped_metrics": {}, "notes": [], "collages": ["collages/a.png"], "collage_alphas": [0.0, 0.5],
            "before_after": hero, "versions": {"torch": torch.__version__},
            "timings": {"total_s": 1.0, "fit_s": 0.5, "evaluate_s": 0.5}}


def _config():
    from dotrestore.experiment import ExperimentConfig

    return ExperimentConfig(clean="clean", degrade="noise:sigma=50", restorer="gaussian-blur:sigma=2")


HERO = {"path": "before_after.png", "stem": "24_coffee_1_0", "method": "dot-detail", "alpha": 0.0, "top": 0,
        "left": 0, "side": 192, "height": 192, "width": 192, "scale": 2}


@pytest.mark.parametrize("rows, called_for", [(BLUR_LIKE, True), (MMSE_LIKE, False), (MSE_ONLY, True)])
def test_report_text(tmp_path, rows, called_for):
    text = report.write_report(tmp_path, rows, _config(), _info(HERO)).read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert images[0] == "before_after.png" and images[1] == "pd_curve.png"
    assert "Test image `24_coffee_1_0`, the whole image, enlarged 2×" in text
    assert (NON_MMSE in text) is called_for
    assert "trades a bounded increase" not in text and "seed" not in text.replace("; seed 0", "")
    # one name for the default low-pass, in the introduction and in the set-up
    assert text.count("an edge-preserving guided filter") >= 2 and "Gaussian low-pass" not in text
    assert "Adrai et al., NeurIPS 2023" in text


def test_report_without_collages_has_no_before_after(tmp_path):
    info = _info(None)
    info["collages"] = []
    text = report.write_report(tmp_path, BLUR_LIKE, _config(), info).read_text()
    assert "before_after" not in text and re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)[0] == "pd_curve.png"


def test_gaussian_split_is_named_a_gaussian_low_pass(tmp_path):
    info = _info(HERO)
    info["operator"]["split"] = "gaussian"
    text = report.write_report(tmp_path, MMSE_LIKE, _config(), info).read_text()
    assert "a Gaussian low-pass of σ = 4 px" in text and "guided" not in text


def _marker_xy(svg: str, gid: str) -> list[tuple[float, float]]:
    group = re.search(rf'<g id="{re.escape(gid)}">(.*?)</g>\s*</g>', svg, re.S)
    assert group, gid
    return [(float(x), float(y)) for x, y in re.findall(r'<use [^>]*x="([-\d.]+)" y="([-\d.]+)"', group.group(1))]


def test_curve_marks_x_star_and_the_lowest_mse_alpha(tmp_path):
    png, svg = figures.pd_curve(BLUR_LIKE, tmp_path / "pd_curve", panels=("latent_fd", "patch_fd"))
    with Image.open(png) as image:
        image.verify()
    text = svg.read_text()
    curve = _marker_xy(text, "curve-dot-detail-latent_fd")  # points in α order: 0, 0.3, 1
    assert len(curve) == 3
    assert _marker_xy(text, "x-star-latent_fd") == [curve[2]]          # x* is the α = 1 point
    assert _marker_xy(text, "lowest-mse-dot-detail-latent_fd") == [curve[1]]  # the ring on α = 0.3
    assert 'id="x-star-label-latent_fd"' in text and 'id="x-star-patch_fd"' in text
    _, svg = figures.pd_curve(MMSE_LIKE, tmp_path / "mmse", panels=("latent_fd",))
    text = svg.read_text()
    assert _marker_xy(text, "lowest-mse-dot-detail-latent_fd") == _marker_xy(text, "x-star-latent_fd")


def _item(size: tuple[int, int]) -> dict:
    torch.manual_seed(0)
    clean = torch.rand(3, *size)
    metric = {"mse": 0.01, "psnr": 20.0, "ssim": 0.5}
    return {"stem": "x", "clean": clean, "restored": clean * 0.5, "degraded": None,
            "dot": {("dot-detail", 0.0): clean * 0.9}, "metrics": {("restored", None): metric,
                                                                  ("dot-detail", 0.0): metric}}


@pytest.mark.parametrize("size, side, scale", [((192, 192), 192, 2), ((40, 60), 40, 10), ((500, 400), 256, 2)])
def test_before_after_is_large_and_pixel_exact(tmp_path, size, side, scale):
    item = _item(size)
    hero = figures.before_after(item, tmp_path, "ba.png", "dot-detail", 0.0)
    assert (hero["side"], hero["scale"]) == (side, scale) and hero["path"] == "ba.png"
    with Image.open(tmp_path / "ba.png") as image:
        array = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    assert image.width >= 3 * figures.HERO_PANEL and image.height > figures.HERO_PANEL
    # the middle panel is DOT's region, each pixel repeated scale×scale times (nearest neighbour)
    top, left = hero["top"], hero["left"]
    expected = (item["dot"][("dot-detail", 0.0)][:, top:top + side, left:left + side] * 255).round().byte()
    x0 = side * scale + 8
    middle = array[:side * scale, x0:x0 + side * scale].permute(2, 0, 1)
    assert torch.equal(middle[:, ::scale, ::scale], expected)


def test_hero_alpha_prefers_zero():
    assert figures.hero_alpha([0.5, 0.0, -0.5]) == 0.0
    assert figures.hero_alpha([0.5, -0.3, 1.0]) == -0.3 and figures.hero_alpha([1.0]) is None


def test_detail_window_finds_the_textured_region():
    clean = torch.full((3, 300, 300), 0.5)
    clean[:, 200:280, 100:180] = torch.rand(3, 80, 80)
    top, left = figures.detail_window(clean, 128)
    assert top <= 200 and top + 128 >= 280 and left <= 100 and left + 128 >= 180
    assert figures.detail_window(clean, 300) == (0, 0)


#: the demo's shape: a detail curve near x*, a whole-image curve whose α = 0 has ×8.4 x*'s MSE (−9.2 dB)
WHOLE_FAILS = BLUR_LIKE + [_row("dot-whole", 0.0, 0.0378, 14.1, 0.4, 0.3), _row("dot-whole", 0.5, 0.012, 19.2),
                           _row("dot-whole", 1.0, 0.0045, 23.30)]


def test_report_defines_every_column_it_shows(tmp_path):
    text = report.write_report(tmp_path, BLUR_LIKE, _config(), _info(HERO)).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| method |"))
    assert "spectrum_distance" in header and "halo_measure" in header
    for column in ("method", "α", "psnr", "ssim", "mse", "latent_fd", "patch_fd", "spectrum_distance",
                   "halo_measure"):
        assert re.search(rf"^- \*\*{re.escape(column)}\*\*: \S", text, re.M), column
    assert "- **lpips**" not in text.lower()  # not shown, so not defined
    assert "detail,whole" in text  # the one variant run: how to add the paper's beside it


def test_a_row_beyond_the_bound_says_why(tmp_path):
    info = _info(HERO)
    info["variants"]["dot-whole"] = {**info["operator"], "operator": "operator-whole.safetensors", "lowpass_sigma": 0.0}
    text = report.write_report(tmp_path, WHOLE_FAILS, _config(), info).read_text()
    line = next(line for line in text.splitlines() if "beyond the theory's ×2 bound" in line)
    assert line.startswith("**DOT whole at α = 0") and "×8.4 x*'s (-9.2 dB)" in line and "moves colours" in line
    assert "24 + 24 paired images" in line
    assert "DOT detail at α = 0 is beyond" not in text  # ×0.89: within the bound, no sentence


def test_curve_frames_x_star_and_points_to_a_distant_y(tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from dotrestore.experiment import curve

    rows = [r for r in WHOLE_FAILS]
    rows[-4] = {**rows[-4], "mse": 0.2, "latent_fd": 60.0}  # y far beyond every DOT point
    fig, ax = plt.subplots()
    labels = curve.draw_panel(ax, rows, "latent_fd")
    fig.canvas.draw()
    assert ax.get_xlim()[1] < 0.2 and ax.get_ylim()[1] < 60  # y does not squash the frame
    assert any(t.get_gid() == "degraded-y-arrow-latent_fd" for t in ax.texts)
    # α labels: dense points, no two labels overlap
    dense = [(0.0045 * (1 + 0.01 * k), 1.0 + 0.01 * k, f"{k / 10:g}", "tab:blue") for k in range(8)]
    placed = curve.place_labels(ax, labels + dense, 8)
    renderer = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(renderer) for a in placed]
    overlapping = [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert not overlapping, overlapping
    plt.close(fig)
    png, svg = figures.pd_curve(rows, tmp_path / "pd", panels=("latent_fd", "patch_fd", "spectrum_distance"))
    text = svg.read_text()
    assert text.count('id="legend_') <= 1 or text.count("<g id=\"legend_1\">") == 1
    assert 'id="degraded-y-label-latent_fd"' in text  # the arrow's label, with y's numbers


def test_collage_adds_pixel_exact_crops_of_the_most_detailed_window(tmp_path):
    item = _item((192, 192))
    item["dot"][("dot-detail", 0.5)] = item["clean"] * 0.7
    item["metrics"][("dot-detail", 0.5)] = item["metrics"][("restored", None)]
    with Image.open(figures.collage(item, tmp_path / "c.png")) as image:
        canvas = np.asarray(image.convert("RGB"))
    side = 96  # half the tile, shown ×2 with nearest-neighbour pixels
    top, left = figures.detail_window(item["clean"], side)
    crop = (item["clean"][:, top:top + side, left:left + side] * 255).round().byte().permute(1, 2, 0).numpy()
    # the crop row starts below the first row; find the clean crop there, each pixel a 2×2 block
    row0 = 192 + figures._CAPTION_H + 8
    assert np.array_equal(canvas[row0:row0 + 2 * side:2, 0:2 * side:2], crop)
    assert np.array_equal(canvas[row0 + 1:row0 + 2 * side:2, 1:2 * side:2], crop)
