"""Fuzz suite, processes and time: races between the checks and the writing, termination signals,
loading workers.

Every case ends with exit 0 and valid output, or exit 2 (128 + N after signal N) with one line
naming the file; no traceback; inputs byte-identical; nothing left behind (no staging folder,
no ``.OUT.partial``, no temporary file). Races are reproduced by hooking the exact moment
after the checks, never by sleeping; signals hit a real process at its first output image
(``tests/_hooked.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import fuzz_support
import pytest
from fuzz_support import (
    assert_one_line_error,
    experiment_args,
    hooked,
    leftovers,
    run,
    tree_digest,
)
from PIL import Image

from dotrestore.runtime import pipeline
from dotrestore.tasks import apply as applying

photos = pytest.fixture(scope="module", name="photos")(fuzz_support.photos)
restorers = pytest.fixture(scope="module", name="restorers")(fuzz_support.restorers)
world = pytest.fixture(scope="module", name="world")(fuzz_support.world)
one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)

#: Called in the main process once per output image: the moment a run is writing.
SUBMIT = "dotrestore.runtime.pipeline:ImageWriter.submit"


class TestRaces:
    """The output folder changes between the checks and the writing: hooked right after the checks."""

    def _after_plan(self, monkeypatch, act):
        real = applying.plan_outputs

        def plan_then_act(*args, **kwargs):
            plan = real(*args, **kwargs)
            act()  # another process, at the worst moment
            return plan

        monkeypatch.setattr(applying, "plan_outputs", plan_then_act)

    @pytest.mark.parametrize("existed", [True, False], ids=["out-existed", "out-new"])
    @pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
    def test_output_folder_swapped_for_a_symlink_to_the_inputs(self, world, tmp_path, monkeypatch, existed,
                                                                 overwrite):
        victim = shutil.copytree(world[0] / "restored", tmp_path / "victim")
        before, out = tree_digest(victim), tmp_path / "out"
        if existed:
            out.mkdir()

        def swap():  # mv out moved; ln -s victim out
            if existed:
                out.rename(tmp_path / "moved")
            out.symlink_to(victim, target_is_directory=True)

        self._after_plan(monkeypatch, swap)
        code, err = run("apply", world[1], victim, "-o", out, *overwrite)
        assert_one_line_error(code, err, out)
        assert tree_digest(victim) == before  # same files, same bytes, nothing added
        assert not existed or not any((tmp_path / "moved").iterdir())

    def test_alpha_folder_swapped_for_a_symlink_to_the_inputs(self, world, tmp_path, monkeypatch):
        victim = shutil.copytree(world[0] / "restored", tmp_path / "victim")
        before, out = tree_digest(victim), tmp_path / "out"
        out.mkdir()
        self._after_plan(monkeypatch, lambda: (out / "alpha_0").symlink_to(victim, target_is_directory=True))
        code, err = run("apply", world[1], victim, "-o", out, "--alpha", "0", "--alpha", "1", "--overwrite")
        assert_one_line_error(code, err, out / "alpha_0")
        assert tree_digest(victim) == before
        assert sorted(p.name for p in out.iterdir()) == ["alpha_0"]  # the symlink itself, nothing of ours

    def test_hard_link_to_an_input_is_never_replaced(self, world, tmp_path, monkeypatch):
        src = shutil.copytree(world[0] / "restored", tmp_path / "src")
        before, out = tree_digest(src), tmp_path / "out"
        out.mkdir()
        self._after_plan(monkeypatch, lambda: os.link(src / "restored1.png", out / "restored1.png"))
        code, err = run("apply", world[1], src, "-o", out, "--overwrite")
        assert_one_line_error(code, err, out / "restored1.png", says="one of the inputs")
        assert tree_digest(src) == before and sorted(p.name for p in out.iterdir()) == ["restored1.png"]

    def test_fit_output_folder_swapped_for_a_symlink_to_the_inputs(self, world, tmp_path, monkeypatch):
        from dotrestore.cli import fit as fitting

        victim = shutil.copytree(world[0] / "restored", tmp_path / "victim")
        before, out = tree_digest(victim), tmp_path / "out"
        out.mkdir()
        real = fitting.check_output_file

        def check_then_swap(*args, **kwargs):
            result = real(*args, **kwargs)
            out.rename(tmp_path / "moved")
            out.symlink_to(victim, target_is_directory=True)
            return result

        monkeypatch.setattr(fitting, "check_output_file", check_then_swap)
        code, err = run("fit", "--source", victim, "--target", world[0] / "clean", "--vae", "pixel",
                        "-o", out / "restored0.png", "--overwrite")
        assert_one_line_error(code, err, "restored0.png", says="one of the inputs")
        assert tree_digest(victim) == before

    def test_experiment_out_swapped_for_a_symlink_to_the_inputs(self, photos, tmp_path, monkeypatch):
        from dotrestore.experiment import runner

        clean = shutil.copytree(photos, tmp_path / "clean")
        before, out = tree_digest(clean), tmp_path / "ex"
        out.mkdir()
        real = runner.plan_inputs

        def plan_then_swap(*args, **kwargs):  # right after the checks of --out
            plan = real(*args, **kwargs)
            out.rename(tmp_path / "moved")
            out.symlink_to(clean, target_is_directory=True)
            return plan

        monkeypatch.setattr(runner, "plan_inputs", plan_then_swap)
        code, err = run(*experiment_args(clean, out, "--workers", "0"))
        assert_one_line_error(code, err, out)
        assert tree_digest(clean) == before and not any((tmp_path / "moved").iterdir())
        assert not leftovers(tmp_path)

    def _during_first_write(self, monkeypatch, act):
        real, done = pipeline.ImageWriter.submit, []

        def submit(writer, *args, **kwargs):
            if not done:
                done.append(None)  # before acting: a nested run writing too must not act again
                done[0] = act()
            return real(writer, *args, **kwargs)

        monkeypatch.setattr(pipeline.ImageWriter, "submit", submit)
        return done

    def test_second_apply_into_the_same_folder_is_refused(self, world, tmp_path, monkeypatch):
        op, restored, out = world[1], world[0] / "restored", tmp_path / "same"
        second = self._during_first_write(
            monkeypatch, lambda: run("apply", op, restored, "-o", out, "--alpha", "1", "--workers", "0"))
        code, err = run("apply", op, restored, "-o", out, "--alpha", "0", "--workers", "0")
        assert code == 0, err
        assert_one_line_error(*second[0], out, says="another dotrestore run")
        reference = tmp_path / "reference"
        assert run("apply", op, restored, "-o", reference, "--alpha", "0")[0] == 0
        assert tree_digest(out) == tree_digest(reference)  # the first run's outputs, complete

    @pytest.mark.parametrize("overwrite", [False, True])
    def test_output_appearing_while_working_is_replaced_only_with_overwrite(self, world, tmp_path, monkeypatch,
                                                                             overwrite):
        out = tmp_path / "out"
        self._during_first_write(monkeypatch, lambda: (out / "restored1.png").write_bytes(b"a user's file"))
        code, err = run("apply", world[1], world[0] / "restored", "-o", out, *(["--overwrite"] if overwrite else []))
        if overwrite:
            assert code == 0, err
            assert sorted(p.name for p in out.iterdir()) == [f"restored{i}.png" for i in range(3)]
            Image.open(out / "restored1.png").load()
        else:
            assert_one_line_error(code, err, out / "restored1.png", says="--overwrite")
            assert [p.name for p in out.iterdir()] == ["restored1.png"]
            assert (out / "restored1.png").read_bytes() == b"a user's file"
        assert not leftovers(tmp_path)

    def test_second_experiment_into_the_same_folder_is_refused(self, photos, tmp_path, monkeypatch):
        out = tmp_path / "ex"
        second = self._during_first_write(monkeypatch, lambda: run(*experiment_args(photos, out, "--workers", "0")))
        code, err = run(*experiment_args(photos, out, "--workers", "0"))
        assert code == 0, err
        assert_one_line_error(*second[0], out, says="another dotrestore run")
        assert (out / "report.md").is_file() and not leftovers(tmp_path)

    def test_experiment_output_appearing_while_working_is_kept(self, photos, tmp_path, monkeypatch):
        out = tmp_path / "ex"
        self._during_first_write(monkeypatch, lambda: (out.mkdir(exist_ok=True),
                                                       (out / "report.md").write_text("my notes")))
        code, err = run(*experiment_args(photos, out, "--workers", "0"))
        assert_one_line_error(code, err, out / "report.md", says="--overwrite")
        assert [p.name for p in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "my notes"
        assert not leftovers(tmp_path)

    @pytest.mark.parametrize("command", ["apply", "fit", "experiment"])
    def test_dot_dot_in_the_output_path_creates_nothing_else(self, world, photos, tmp_path, monkeypatch, command):
        monkeypatch.chdir(tmp_path)
        argv = {"apply": ["apply", world[1], world[0] / "restored", "-o", "x/../out"],
                "fit": ["fit", "--source", world[0] / "restored", "--target", world[0] / "clean", "--vae", "pixel",
                        "-o", "x/../out"],
                "experiment": experiment_args(photos, "x/../out", "--workers", "0")}[command]
        code, err = run(*argv)
        assert code == 0, err
        assert [p.name for p in tmp_path.iterdir()] == ["out"]


SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"]


class TestSignals:
    """Ctrl-C, SIGTERM and SIGHUP mid-run (hooked at the first output image), real processes."""

    def _check(self, result, sig, inputs: Path, before, root: Path, out: Path):
        assert_one_line_error(result.returncode, result.stderr, f"interrupted ({sig})",
                              status=128 + getattr(signal, sig))
        assert tree_digest(inputs) == before
        assert not out.exists() and not leftovers(root), leftovers(root)

    @pytest.mark.parametrize("sig", SIGNALS)
    def test_apply(self, world, tmp_path, sig):
        inputs, out = world[0] / "restored", tmp_path / "deep" / "out"
        before = tree_digest(inputs)
        result = hooked(SUBMIT, {0: sig}, "apply", world[1], inputs, "-o", out, "--alpha", "0", "--alpha", "1",
                        "--workers", "2", "--no-progress")
        self._check(result, sig, inputs, before, tmp_path, tmp_path / "deep")

    @pytest.mark.parametrize("sig", SIGNALS)
    def test_experiment(self, photos, tmp_path, sig):
        before, out = tree_digest(photos), tmp_path / "deep" / "ex"
        result = hooked(SUBMIT, {0: sig}, *experiment_args(photos, out, "--workers", "2"))
        self._check(result, sig, photos, before, tmp_path, tmp_path / "deep")

    @pytest.mark.slow
    @pytest.mark.distributed
    @pytest.mark.parametrize("command", ["apply", "experiment"])
    def test_torchrun_terminates_the_other_rank(self, world, photos, tmp_path, command):
        """Rank 1 is killed; torchrun sends SIGTERM to rank 0, which must clean up (rank 1's staging too)."""
        inputs = photos
        before, out = tree_digest(inputs), tmp_path / "out"
        argv = (["apply", world[1], inputs, "-o", out, "--no-progress"] if command == "apply"
                else experiment_args(inputs, out, "--fit-source", "1", "--fit-target", "1"))  # 3 test images
        result = hooked(SUBMIT, {0: "wait", 1: "SIGKILL"}, *argv, "--workers", "0", torchrun=True)
        assert result.returncode != 0 and "exitcode: -9" in result.stderr, result.stderr[-3000:]  # rank 1 killed
        assert "interrupted (SIGTERM)" in result.stderr, result.stderr[-3000:]
        assert tree_digest(inputs) == before
        assert not out.exists() and not leftovers(tmp_path), leftovers(tmp_path)


class TestWorkers:
    """Errors raised in DataLoader workers read exactly as without workers."""

    @pytest.mark.parametrize("workers", ["0", "2"])
    def test_file_truncated_after_validation(self, world, tmp_path, monkeypatch, workers):
        src = shutil.copytree(world[0] / "restored", tmp_path / "src")
        victim = src / "restored1.png"
        real = applying.check_images

        def check_then_truncate(*args, **kwargs):
            records = real(*args, **kwargs)
            victim.write_bytes(victim.read_bytes()[:100])  # another program, after our check
            return records

        monkeypatch.setattr(applying, "check_images", check_then_truncate)
        code, err = run("apply", world[1], src, "-o", tmp_path / "out", "--workers", workers)
        assert_one_line_error(code, err, victim, says="cannot be decoded")
        assert not (tmp_path / "out").exists() and not leftovers(tmp_path)

    def test_internal_error_reads_the_same_with_and_without_workers(self, world, tmp_path, monkeypatch):
        def broken(path, max_pixels=None):
            raise ZeroDivisionError("a bug while reading")

        monkeypatch.setattr(applying.image_formats, "read_kept", broken)
        lines = []
        for workers in ("0", "2"):
            code, err = run("apply", world[1], world[0] / "restored", "-o", tmp_path / f"out{workers}",
                            "--workers", workers)
            lines.append(assert_one_line_error(code, err, "ZeroDivisionError: a bug while reading", status=1))
        assert lines[0] == lines[1]

    @pytest.mark.slow
    @pytest.mark.distributed
    def test_restorer_refused_under_torchrun_with_workers(self, photos, restorers, tmp_path):
        out, spec = tmp_path / "ex", f"{restorers}:eight_bit"
        args = experiment_args(photos, out, "--workers", "2")
        args[args.index("gaussian-blur:sigma=1")] = spec
        result = hooked(SUBMIT, {}, *args, torchrun=True)
        ranks = [line for line in result.stderr.splitlines() if ": error: " in line]
        # one line per rank (each written in one piece, so two ranks' lines never run together)
        assert len(ranks) == 2 and all(line.count(": error: ") == 1 and spec in line and "uint8" in line
                                       for line in ranks), result.stderr[-3000:]
        assert "Caught" not in result.stderr and not out.exists() and not leftovers(tmp_path)


