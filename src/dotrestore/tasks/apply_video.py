"""Applying an operator to a video clip: the output clips, the checks before any work, streamed frames.

One α writes the ``-o`` clip; several write one clip per α beside it, named like the image
outputs' folders: ``out.mkv`` → ``out_alpha_0.mkv``, ``out_alpha_0.5.mkv`` (:func:`video_targets`).
:func:`plan_video` checks everything before the slow work starts (the clip is probed: readable,
not truncated, a video stream with frames within ``max_pixels``; the outputs' extensions,
encoder and ``crf``; no output is the input whatever path leads there; nothing is replaced
without ``overwrite``; the folder is writable).

:func:`write_video` streams the frames through the same engine as images: batches of
``runtime.batch_size`` frames, the next batch decoded on a background thread
(:func:`~dotrestore.runtime.frames.frame_batches`), encoded, transported and decoded once by
:meth:`DOT.iter_alphas <dotrestore.DOT.iter_alphas>`, each x̂α encoded into its clip in order.
Memory holds a few batches, never the clip. The outputs keep the input's time stamps, frame
rate, rotation and colour tags, and its audio and subtitles unchanged
(:class:`~dotrestore.io.video.VideoWriter`).

Under torchrun rank r of W takes the r-th contiguous frame range
(:func:`~dotrestore.io.video.segment_ranges`) and writes a video-only segment per α; rank 0
joins them by stream copy with the input's sound (:func:`~dotrestore.io.video.concat_segments`),
so with a lossless codec the clip equals a one-process run frame for frame. The segments live
beside the output (a folder every rank can read). Every file is staged under a hidden name and
moved into place only when every clip is complete on every rank: a failure or an interrupt
anywhere leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import settings
from ..errors import ImageTooSmallError, InputError, OperatorFileError
from ..io.files import commit, staged_as, temporary_path
from ..io.outputs.folder import make_folders
from ..io.outputs.guard import check_output_file
from ..io.video import VideoInfo, VideoWriter, concat_segments, is_video, probe, segment_ranges
from ..io.video.check import check_writable
from ..ot.tradeoff import blend
from ..runtime import parallel
from ..runtime.frames import frame_batches
from ..temporal import TemporalDetail
from .apply import alpha_dirname


def video_targets(out: str | os.PathLike, alphas: Sequence[float]) -> dict[float, Path]:
    """Output clip per α: ``out`` for one α; ``<out stem>_alpha_<A><out suffix>`` for several."""
    out, alphas = Path(out), list(dict.fromkeys(float(a) for a in alphas))
    if len(alphas) == 1:
        return {alphas[0]: out}
    return {a: out.with_name(f"{out.stem}_{alpha_dirname(a)}{out.suffix}") for a in alphas}


@dataclass
class VideoPlan:
    """Where the clips go: ``targets[α]`` is the clip of ``info``'s frames at α."""

    info: VideoInfo
    alphas: list[float]
    targets: dict[float, Path]
    codec: str | None = None
    crf: int | None = None
    temporal: str = settings.default("temporal")

    @property
    def frame_count(self) -> int:
        return self.info.frame_count


def plan_video(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, alphas: Sequence[float], *,
               max_pixels: int | None, codec: str | None = None, crf: int | None = None, protected: Sequence = (),
               overwrite: bool = False, temporal: str = settings.default("temporal")) -> VideoPlan:
    """Check applying to one clip at ``alphas`` into ``out``; InputError naming the file or path.

    ``protected`` are further files the run reads (the operator, the codec's weights): no
    output may be one of them or the input, even with ``overwrite``.
    """
    inputs = [Path(p) for p in inputs]
    clips = [p for p in inputs if is_video(p) and not p.is_dir()]
    if len(inputs) != 1:
        first = inputs.index(clips[0])
        other = next(p for i, p in enumerate(inputs) if i != first)
        kind = "another video clip" if other in clips else "not a video clip"
        raise InputError(other, f"is {kind}, given beside the clip {clips[0]}: a clip is applied on its own (one "
                         "clip per run; pictures in another run, or a folder of frames)")
    info = probe(inputs[0], max_pixels)
    targets = video_targets(out, alphas)
    reads = [inputs[0], *protected]
    for target in targets.values():
        check_output_file(target, reads, overwrite)
        check_writable(target, info, codec, crf)  # the encoder, streams and time stamps, before any work
    return VideoPlan(info, list(targets), targets, codec, crf, settings.check("temporal", temporal))


def _staged_path(final: Path, kind: str) -> Path:
    """A new hidden file beside ``final`` ending in ``.<kind><final's extension>`` (the muxer follows it)."""
    return temporary_path(final, suffix=f".{kind}{final.suffix}")


def _frame_outputs(dot, batch, alphas: list[float], interpolation: str, temporal: TemporalDetail | None,
                   start: int):
    """(α, x̂α of the batch's frames from ``start`` on). With ``temporal``, every frame of the batch
    (warm-up frames before ``start`` included) first passes through it: x̂0 under pixel
    interpolation (then blended, so α = 1 is x* exactly), each α's output under latent."""
    if temporal is None:
        yield from dot.iter_alphas(batch.images, alphas, interpolation=interpolation)
        return
    pixel = interpolation == "pixel"
    made = dict(dot.iter_alphas(batch.images, [0.0] if pixel else alphas, interpolation=interpolation))
    steady: dict[float, list] = {key: [] for key in made}
    for i, index in enumerate(batch.positions):
        frame = temporal(index, batch.images[i], {key: out[i] for key, out in made.items()})
        if index >= start:
            for key, out in frame.items():
                steady[key].append(out)
    del made
    if not steady[next(iter(steady))]:
        return  # warm-up frames only
    kept = batch.images[[i for i, index in enumerate(batch.positions) if index >= start]]
    for a in alphas:
        if pixel:
            yield a, blend(torch.stack(steady[0.0]), kept.to(steady[0.0][0].device), a)
        else:
            yield a, torch.stack(steady[a])


def _transport_range(dot, plan: VideoPlan, frames: tuple[int, int], parts: dict[float, Path], *, copy_streams: bool,
                     interpolation: str, operator, progress: Callable[[int], None]) -> None:
    """Frames [start, stop) of the clip through DOT at every α, each α encoded into ``parts[α]``.
    With temporal consistency on, reading starts a few frames early (:meth:`TemporalDetail.warm_up_start`)."""
    start, stop = frames
    temporal = TemporalDetail() if plan.temporal == "on" else None
    writers: dict[float, VideoWriter] = {}
    try:
        for a in plan.alphas:
            writers[a] = VideoWriter(parts[a], plan.info, codec=plan.codec, crf=plan.crf, start=start,
                                     copy_streams=copy_streams, atomic=False, name=plan.targets[a])
        first = start if temporal is None else temporal.warm_up_start(start)
        for batch in frame_batches(plan.info, first, stop, batch_size=dot.resolved.runtime.batch_size):
            try:
                for a, result in _frame_outputs(dot, batch, plan.alphas, interpolation, temporal, start):
                    if not bool(result.isfinite().all()):
                        raise OperatorFileError(operator, f"gave non-finite values when transporting "
                                                f"{batch.names[0]}: its statistics are unusable")
                    writers[a].write(result)
                    del result
            except ImageTooSmallError as exc:  # zero-shot statistics of this very frame
                raise ImageTooSmallError(batch.names[0], exc.problem) from None
            progress(sum(index >= start for index in batch.positions))
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


def _finish(plan: VideoPlan, segments: list[dict[float, str]], parts: dict[float, Path],
            staged: dict[float, Path]) -> None:
    """Rank 0: the complete clips moved into place. With several processes, every α's segments
    are first joined, in rank order, into a staged clip with the input's sound. Errors name the
    α's clip, never a segment or a staged file."""
    for a, target in plan.targets.items():
        if len(segments) == 1:
            staged[a] = parts[a]
            continue
        pieces = [Path(s[a]) for s in segments if s]
        staged[a] = _staged_path(target, "new")
        with staged_as(dict.fromkeys([*pieces, staged[a]], target)):
            concat_segments(pieces, staged[a], audio_from=plan.info)
    for a, target in plan.targets.items():
        commit(staged[a], target)  # an OSError names the target


def write_video(dot, plan: VideoPlan, *, interpolation: str = "pixel", operator: str | os.PathLike = "operator",
                progress: Callable[[int], None] | None = None) -> int:
    """Transport every frame of ``plan``'s clip with the fitted ``dot``, one clip per α; returns
    the number of frames of each clip.

    Collective under torchrun (every rank calls it). ``progress(n)`` is called with the number
    of frames done so far (estimated across ranks from this rank's share).
    """
    world = parallel.world_size()
    frames = segment_ranges(plan.frame_count, world)[parallel.rank()]
    created: list[Path] = []
    parts: dict[float, Path] = {}
    staged: dict[float, Path] = {}
    done, finished = 0, False

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done * world, plan.frame_count))

    def encode() -> dict[float, str]:
        for target in plan.targets.values():  # the folders this process makes, removed again on failure
            created.extend(make_folders(os.path.realpath(target.parent)))
        if frames[0] == frames[1]:
            return {}  # more processes than frames: this rank writes nothing
        parts.update({a: _staged_path(t, "part" if world > 1 else "new") for a, t in plan.targets.items()})
        _transport_range(dot, plan, frames, parts, copy_streams=world == 1, interpolation=interpolation,
                         operator=operator, progress=advance)
        return {a: str(p) for a, p in parts.items()}

    try:
        mine = parallel.run_checked(encode)
        segments = parallel.gather_objects(mine)
        # rank 0 finishes; every other rank keeps its segments until then (run_checked waits for all)
        parallel.run_checked(lambda: _finish(plan, segments, parts, staged) if parallel.is_main() else None)
        finished = True
    finally:
        for path in [*parts.values(), *staged.values()]:
            path.unlink(missing_ok=True)
        for folder in [] if finished else created:  # only folders this run made, and only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
    return plan.frame_count


__all__ = ["video_targets", "VideoPlan", "plan_video", "write_video"]
