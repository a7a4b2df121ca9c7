"""``dotrestore demo``: tiles only from the chosen photographs of the world, the stated counts,
and a report that opens with the before/after of the first test tile."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore import cli as top_cli

from support import tree_digest

demo = importlib.import_module("dotrestore.experiment.demo")  # the package exports the function demo()

PHOTOGRAPHS = {"astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right"}


def _photo(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("motorcycle"):
        with Image.open(Path(skimage.data.__file__).parent / f"{name}.png") as image:
            return np.asarray(image.convert("RGB"))
    return np.asarray(getattr(skimage.data, name)())[..., :3]


def test_demo_tiles_are_cut_from_the_six_photographs_only():
    assert set(demo.PHOTOS) | {Path(f).stem for f in demo.PHOTO_FILES} == PHOTOGRAPHS
    fit, test = demo.demo_tiles()
    assert (len(fit), len(test)) == (24, 6)
    names = [name for name, _ in fit + test]
    photos = [re.fullmatch(r"(.+)_(\d+)_(\d+)", n).group(1) for n in names]
    assert set(photos) == PHOTOGRAPHS
    assert sorted(re.fullmatch(r"(.+)_\d+_\d+", n).group(1) for n, _ in test) == sorted(PHOTOGRAPHS)  # one each
    assert test[0][0].startswith(demo.HERO + "_") and len(set(names)) == 30
    for name, tile in fit + test:  # each tile is exactly its named cell of the photograph's centred grid
        photo, r, c = re.fullmatch(r"(.+)_(\d+)_(\d+)", name).groups()
        array = _photo(photo)
        h, w = array.shape[:2]
        top = (h - h // demo.TILE * demo.TILE) // 2 + int(r) * demo.TILE
        left = (w - w // demo.TILE * demo.TILE) // 2 + int(c) * demo.TILE
        assert tile.shape == (192, 192, 3) and np.array_equal(tile, array[top:top + 192, left:left + 192]), name


def test_each_test_tile_is_its_photographs_most_detailed():
    fit, test = demo.demo_tiles()
    for name, tile in test:
        photo = name.rsplit("_", 2)[0]
        others = [demo._detail(t) for n, t in fit if n.rsplit("_", 2)[0] == photo]
        assert others and demo._detail(tile) > max(others), name


def test_make_demo_images_writes_fit_tiles_first(tmp_path):
    paths, fit = demo.make_demo_images(tmp_path)
    assert fit == 24 and len(paths) == 30
    assert [p.name[:3] for p in paths] == [f"{k:02d}_" for k in range(30)]
    assert paths[24].name.startswith(f"24_{demo.HERO}_")
    arrays = [np.asarray(Image.open(p)) for p in paths]
    assert all(a.shape == (192, 192, 3) for a in arrays) and len({a.tobytes() for a in arrays}) == 30


def test_demo_help_states_the_real_counts(capsys):
    with pytest.raises(SystemExit):
        top_cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    fit, test = demo.demo_tiles()
    match = re.search(r"Cuts (\d+) tiles of (\d+)x(\d+) .* fitting on (\d+) tiles \(paired\) and testing on (\d+)",
                      text)
    assert match, text
    assert [int(g) for g in match.groups()] == [len(fit) + len(test), demo.TILE, demo.TILE, len(fit), len(test)]
    assert "seed" not in text


@pytest.mark.slow
def test_demo_with_the_pixel_codec_opens_on_the_before_after(tmp_path, capsys):
    out = tmp_path / "demo"
    assert top_cli.main(["demo", "--out", str(out), "--vae", "pixel"]) == 0
    report = out / "report.md"
    assert str(report) in capsys.readouterr().out
    text = report.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert images[0] == "before_after.png" and (out / "before_after.png").is_file()
    assert f"Test image `24_{demo.HERO}_" in text and "Averages over the 6 test images" in text
    assert "24 source (restored) images, 24 target (clean) images, 6 test images" in text
    assert len(list((out / "collages").iterdir())) == 6
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        assert (out / link).exists(), link
    # our detail transport alone by default, and the report says how to add the paper's
    assert "DOT detail at α = 0" in text and "DOT whole" not in text
    assert "`dotrestore demo --variants detail,whole`" in text
    # the README's first command run twice: the second run leaves the first as it was
    before = tree_digest(out)
    assert top_cli.main(["demo", "--out", str(out), "--vae", "pixel"]) == 0
    printed = capsys.readouterr().out
    assert tree_digest(out) == before and (tmp_path / "demo-2" / "report.md").is_file()
    assert f"this run wrote {tmp_path / 'demo-2'} instead" in printed


def test_a_second_demo_gets_a_fresh_numbered_folder(tmp_path):
    out = tmp_path / "dotrestore-demo"
    assert demo.fresh_folder(out) == out  # missing
    out.mkdir()
    assert demo.fresh_folder(out) == out  # empty
    (out / "report.md").write_text("a previous demo")
    assert demo.fresh_folder(out) == tmp_path / "dotrestore-demo-2"
    (tmp_path / "dotrestore-demo-2").mkdir()
    (tmp_path / "dotrestore-demo-2" / "x").write_text("")
    (tmp_path / "dotrestore-demo-3").write_text("a file, not a folder")
    assert demo.fresh_folder(out) == tmp_path / "dotrestore-demo-4"


def test_demo_help_gives_the_default_variants_from_the_settings(capsys):
    from dotrestore import settings

    with pytest.raises(SystemExit):
        top_cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert settings.DEMO_VARIANTS == ("detail",)
    assert f"(default: {','.join(settings.DEMO_VARIANTS)}, our detail transport alone; detail,whole adds" in text
    assert "writes DIR-2 (DIR-3, ...) instead" in text


def _green_cores(image: torch.Tensor) -> int:
    """Bright pixels (a channel ≥ 180 of 255) with G > R + 10: green-cyan cores of lights."""
    levels = (image * 255).round()
    r, g = levels[0], levels[1]
    return int(((g > r + 10) & (levels.amax(0) >= 180)).sum())


@pytest.mark.slow
def test_demo_rocket_lights_keep_their_colour(tmp_path):
    """The demo's fit (TAEF2, paired, 24 tiles) on its rocket test tile: α = 0 once gave the
    lights 71 green-cyan core pixels (x*: 0, clean: 5); now at most as many as the clean tile."""
    from dotrestore import DOT
    from dotrestore.experiment.config import ExperimentConfig
    from dotrestore.experiment.inputs import load_clean, make_triple, plan_inputs

    _, fit = demo.make_demo_images(tmp_path)
    config = ExperimentConfig(clean=str(tmp_path), degrade=demo.DEGRADE, restorer=demo.RESTORER, vae="taef2",
                              fit_source=fit, fit_target=fit, paired=True, out=str(tmp_path / "out"),
                              progress=False, workers=0)
    config.validate()
    plan = plan_inputs(config)
    dot = DOT(codec="taef2", runtime={"progress": False, "workers": 0})
    dot.fit(torch.stack([make_triple(it, plan, config).restored for it in plan.source]),
            torch.stack([load_clean(it, config) for it in plan.target]))
    rocket = next(it for it in plan.test if "rocket" in it.stem)
    triple = make_triple(rocket, plan, config)
    x0 = dot.transform(triple.restored, alpha=0.0)
    clean_cores = _green_cores(triple.clean)
    assert clean_cores == 5 and _green_cores(triple.restored) == 0  # the tile measured in the report
    assert _green_cores(x0) <= clean_cores
