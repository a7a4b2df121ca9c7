"""Fuzz suite, outputs never land among inputs: every command × every input option × every
spelling of an output location that is (or holds) that input.

Each refused case ends with exit 2 and one line naming the output, before any work, with the
whole tree byte-identical and nothing left behind; an output folder inside an input folder is
accepted and never read back as an input.
"""

from __future__ import annotations

import os
from pathlib import Path

import fuzz_support
import pytest
from fuzz_support import assert_one_line_error, experiment_args, leftovers, run, tree_digest, write_images

one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/{restored, clean, test, photos}/ and root/op.safetensors (pixel codec)."""
    root = tmp_path_factory.mktemp("apart")
    write_images(root / "restored", 3, seed=0, name="r")
    write_images(root / "clean", 3, seed=1, name="c")
    write_images(root / "photos", 5, size=(32, 32), seed=3, name="p")
    write_images(root / "test", 2, size=(32, 32), seed=4, name="t")
    code, err = run("fit", "--source", root / "restored", "--target", root / "clean", "--vae", "pixel",
                    "--device", "cpu", "-o", root / "op.safetensors")
    assert code == 0, err
    return root


#: every way of spelling an output location that is the input folder ``d``, or holds it
SPELLINGS = {
    "same": lambda d: str(d),
    "trailing-slash": lambda d: f"{d}/",
    "dot": lambda d: f"{d}/.",
    "dot-dot": lambda d: f"{d}/../{d.name}",
    "relative": lambda d: os.path.relpath(d),
    "symlink": lambda d: _symlink(d),
    "symlinked-parent": lambda d: str(_symlink(d.parent) / d.name),
    "parent": lambda d: str(d.parent),
    "grandparent": lambda d: str(d.parent.parent),
}


def _symlink(target: Path) -> Path:
    link = target.parent.parent / f"link-{target.parent.name}-{target.name}"
    if not os.path.lexists(link):
        link.symlink_to(target, target_is_directory=True)
    return link


def _name(output: str) -> str:
    """The output as error lines name it (``Path``'s spelling: no trailing ``/`` or ``/.``)."""
    return str(Path(output))


def _refused(tree: Path, argv: list, output: str) -> None:
    before = tree_digest(tree)
    code, err = run(*argv)
    assert_one_line_error(code, err, _name(output))
    assert tree_digest(tree) == before
    assert not leftovers(tree)


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize("given", ["folder", "file"])
def test_apply_output_folder_apart_from_inputs(tree, spelling, given, monkeypatch):
    monkeypatch.chdir(tree)
    output = SPELLINGS[spelling](tree / "restored")
    source = tree / "restored" if given == "folder" else tree / "restored" / "r0.png"
    before = tree_digest(tree)
    for alphas in (["--alpha", "0"], ["--alpha", "0", "--alpha", "1"]):
        code, err = run("apply", tree / "op.safetensors", source, "-o", output, "--overwrite", "--device", "cpu",
                        "--no-progress", *alphas)
        assert_one_line_error(code, err, _name(output))
        assert tree_digest(tree) == before
        assert not leftovers(tree)


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "parent"])
def test_apply_output_folder_holding_the_operator_is_refused(tree, spelling, monkeypatch):
    monkeypatch.chdir(tree)
    ops = tree / "ops"
    ops.mkdir(exist_ok=True)
    (ops / "op.safetensors").write_bytes((tree / "op.safetensors").read_bytes())
    output = SPELLINGS[spelling](ops)
    before = tree_digest(tree)
    code, err = run("apply", ops / "op.safetensors", tree / "restored", "-o", output, "--device", "cpu", "--no-progress")
    assert_one_line_error(code, err, _name(output), says="op.safetensors" if spelling != "parent" else "")
    assert tree_digest(tree) == before


@pytest.mark.parametrize("option", ["--source", "--target"])
@pytest.mark.parametrize("spelling", ["same", "dot", "dot-dot", "symlink"])
def test_fit_output_apart_from_inputs(tree, option, spelling, monkeypatch):
    monkeypatch.chdir(tree)
    folder = "restored" if option == "--source" else "clean"
    inputs = {"--source": tree / "restored", "--target": tree / "clean"}
    before = tree_digest(tree)
    # the output is the input folder itself, or an image file of it
    for output in (SPELLINGS[spelling](tree / folder), str(Path(SPELLINGS[spelling](tree / folder)) / "r0.png")):
        code, err = run("fit", "--source", inputs["--source"], "--target", inputs["--target"], "--vae", "pixel",
                        "--device", "cpu", "-o", output, "--overwrite")
        assert_one_line_error(code, err, _name(output))
        assert tree_digest(tree) == before


@pytest.mark.parametrize("option", ["--source", "--target"])
def test_fit_output_with_an_image_name_in_an_input_folder_is_refused(tree, option):
    """The next run over that folder would list the operator as an image."""
    folder = tree / ("restored" if option == "--source" else "clean")
    output = folder / "operator.png"
    code, err = run("fit", "--source", tree / "restored", "--target", tree / "clean", "--vae", "pixel",
                    "--device", "cpu", "-o", output)
    assert_one_line_error(code, err, output, says=option)
    assert not output.exists()


def _experiment(tree: Path, out, option: str, *extra) -> list:
    args = experiment_args(tree / "photos", out, "--overwrite", *extra)
    if option == "--test-clean":
        args += ["--test-clean", tree / "test"]
    elif option == "--restored":
        args[args.index("--restorer"):args.index("--restorer") + 2] = []
        args[args.index("--degrade"):args.index("--degrade") + 2] = []
        args += ["--restored", tree / "photos"]
    return args


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize("option", ["--clean", "--test-clean", "--restored"])
def test_experiment_out_apart_from_inputs(tree, option, spelling, monkeypatch):
    """``--out`` equal to ``--clean`` with ``--overwrite`` used to exit 0 and write into the photographs."""
    monkeypatch.chdir(tree)
    folder = "test" if option == "--test-clean" else "photos"
    output = SPELLINGS[spelling](tree / folder)
    _refused(tree, _experiment(tree, output, option), output)


def test_experiment_out_holding_the_config_names_it(tree, tmp_path):
    """The rerun recipe ``--config OUT/config.yaml`` with OUT as --out: refused naming the config and
    saying what to do; the recipe with another --out works."""
    out = tmp_path / "first"
    code, err = run(*experiment_args(tree / "photos", out))
    assert code == 0, err
    before = tree_digest(tmp_path)
    code, err = run("experiment", "--config", out / "config.yaml", "--no-progress")
    line = assert_one_line_error(code, err, out / "config.yaml", says="--out")
    assert "--out NEW" in line
    assert tree_digest(tmp_path) == before
    code, err = run("experiment", "--config", out / "config.yaml", "--out", tmp_path / "again", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "again" / "results.csv").read_text() == (out / "results.csv").read_text()


def test_output_folders_inside_input_folders_are_never_read_back(tree, tmp_path):
    """An output folder inside the input folder is allowed, and a second run reads the same inputs."""
    photos = tmp_path / "photos"
    write_images(photos, 5, size=(32, 32), seed=3, name="p")
    for _ in range(2):
        code, err = run(*experiment_args(photos, photos / "results", "--overwrite"))
        assert code == 0, err
        assert '"clean_images": 5' in (photos / "results" / "results.json").read_text()
        code, err = run("apply", tree / "op.safetensors", photos, "-o", photos / "applied", "--overwrite",
                        "--alpha", "0", "--alpha", "1", "--device", "cpu", "--no-progress")
        assert code == 0, err
        assert sorted(p.name for p in (photos / "applied" / "alpha_0").iterdir()) == [f"p{i}.png" for i in range(5)]
