"""Video clips in and out: probe, read frames, write frames, join segments (PyAV / FFmpeg).

Frames in memory are float32 (3, H, W) RGB tensors in [0, 1], as images are
(:mod:`dotrestore.io.images`); nothing holds a whole clip. PyAV is optional:
``pip install "dotrestore[video]"``; without it every entry point raises an InputError
naming the file and that command.

- :func:`probe` -> :class:`VideoInfo` (exact frame count and time stamps, rate, rotation,
  colour tags, other streams), checking the file first;
- :func:`read_frames` (a whole clip or a [start, stop) range), :func:`sample_frames` and
  :func:`frame_step` for fitting;
- :class:`VideoWriter` (same time stamps, rotation, colour tags; audio and subtitles copied);
- :func:`segment_ranges` and :func:`concat_segments` for several processes writing one clip.
"""

from __future__ import annotations

from .probe import VIDEO_EXTENSIONS, StreamInfo, VideoInfo, import_av, is_video, probe
from .read import DEFAULT_FIT_FRAMES, DecodedFrame, frame_step, read_frames, sample_frames, segment_ranges
from .remux import OUTPUT_FORMATS, concat_segments, output_format
from .write import DEFAULT_CRF, VideoWriter, encoding

__all__ = [
    "VIDEO_EXTENSIONS", "OUTPUT_FORMATS", "DEFAULT_CRF", "DEFAULT_FIT_FRAMES", "StreamInfo", "VideoInfo",
    "DecodedFrame", "VideoWriter", "import_av", "is_video", "probe", "read_frames", "sample_frames",
    "frame_step", "segment_ranges", "concat_segments", "output_format", "encoding",
]
