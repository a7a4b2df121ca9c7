"""Cost of video I/O per frame, against the codec work DOT does on the same frame, in one run.

Frames are a slow pan over Kodak photographs with sensor-like noise (``--kodak DIR``, default
$DOTRESTORE_SHARED/data/kodak24 or ../shared/data/kodak24; smooth random fields when absent),
``--size`` 1920x1080, ``--frames`` 120. Measured, each as wall and CPU ms per frame:

- decode H.264 (mp4) and FFV1 (mkv) into float RGB tensors (:func:`dotrestore.io.video.read_frames`),
  and the share of that spent in FFmpeg's decoder alone; :func:`~dotrestore.io.video.probe`
  once per clip;
- encode tensors to FFV1 (.mkv, lossless) and H.264 (.mp4, CRF 18) with
  :class:`~dotrestore.io.video.VideoWriter`;
- the same frames read and written as PNG files (first ``--png-frames``);
- TAEF2 encode + decode of one frame (skip with ``--no-codec``): the floor of DOT's cost.

The last lines print the I/O of a clip (decode H.264 + encode FFV1) over the I/O of PNGs, and
over TAEF2's encode + decode of the frame.

    python benchmarks/video_io.py [--frames 120] [--size 1920x1080] [--png-frames 12]
                                  [--kodak DIR] [--threads 1] [--no-codec] [--work DIR]

``--threads`` sets torch's threads for the tensor conversions (FFmpeg picks its own); TAEF2
runs with torch's default.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dotrestore.io.images import read_image, save_image
from dotrestore.io.video import VideoWriter, import_av, probe, read_frames

HERE = Path(__file__).resolve().parent
DEFAULT_KODAK = Path(os.environ.get("DOTRESTORE_SHARED", HERE.parents[1] / "shared")) / "data" / "kodak24"
PAN = 2  # pixels per frame


def panorama(height: int, width: int, kodak: Path) -> torch.Tensor:
    """A (3, height, width) picture to pan over: Kodak photographs side by side, scaled to height."""
    files = sorted(kodak.glob("kodim*.png"))[:4] if kodak.is_dir() else []
    if files:
        tiles = []
        for path in files:  # each photograph scaled to the frame height, aspect kept
            image = read_image(path)[None]
            size = (height, round(image.shape[3] * height / image.shape[2]))
            tiles.append(F.interpolate(image, size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1))
        strip = torch.cat(tiles, dim=2)
        reps = -(-width // strip.shape[2])
        return torch.cat([strip] * reps, dim=2)[:, :height, :width].contiguous()
    g = torch.Generator().manual_seed(0)
    low = F.interpolate(torch.rand(1, 3, 9, 9 * width // height, generator=g), size=(height, width), mode="bicubic")
    return (low[0] + 0.03 * torch.randn(3, height, width, generator=g)).clamp(0, 1)


class Pan:
    """Frame t: a window moving PAN pixels per frame over the picture, plus sensor-like noise
    (1.5 levels; camera clips carry it, and it sets how hard the codecs work)."""

    def __init__(self, picture: torch.Tensor, width: int, bank: int = 4):
        self.picture, self.width = picture, width
        g = torch.Generator().manual_seed(0)
        shape = (3, picture.shape[1], width)
        self.noise = [(1.5 / 255 * torch.randn(shape, generator=g)).half() for _ in range(bank)]

    def __call__(self, t: int) -> torch.Tensor:
        window = self.picture[:, :, PAN * t: PAN * t + self.width]
        return (window + self.noise[t % len(self.noise)]).clamp_(0, 1)


def make_source(path: Path, pan: Pan, frames: int) -> None:
    """The input clip: H.264 CRF 18 at 30 fps, written with PyAV directly."""
    av = import_av(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = pan.width, pan.picture.shape[1], "yuv420p"
        for t in range(frames):
            rgb = (pan(t) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
            video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            video_frame.pts = t
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))


class Clock:
    """Wall-clock and CPU seconds (all threads of this process) spent inside ``with clock:``.

    CPU time shows the work itself when other processes share the cores; wall time is what a
    user waits."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu

    def per(self, count: int) -> tuple[float, float]:
        return self.wall / count, self.cpu / count


def time_probe(path: Path) -> tuple[float, float]:
    with Clock() as clock:
        probe(path, max_pixels=None)
    return clock.per(1)


def time_read(path: Path) -> tuple[float, float]:
    """Per frame, to decode into tensors (the clip already probed)."""
    info, count = probe(path, max_pixels=None), 0
    with Clock() as clock:
        for _ in read_frames(info):
            count += 1
    return clock.per(count)


def time_decode_only(path: Path) -> tuple[float, float]:
    av, count = import_av(path), 0
    with Clock() as clock, av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            count += 1
    return clock.per(count)


def time_write(path: Path, info, pan: Pan, frames: int) -> tuple[float, float]:
    """Per frame, in the writer (making the frames is not counted)."""
    clock = Clock()
    with clock:
        writer = VideoWriter(path, info, copy_streams=False)
    for t in range(frames):
        image = pan(t)
        with clock:
            writer.write(image)
    with clock:
        writer.close()
    return clock.per(frames)


def time_png(folder: Path, pan: Pan, frames: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per frame, to read and to write a PNG."""
    reading, writing, paths = Clock(), Clock(), []
    for t in range(frames):
        image = pan(t)
        with writing:
            paths.append(save_image(image, folder / f"frame{t:04d}.png"))
    with reading:
        for path in paths:
            read_image(path, max_pixels=None)
    return reading.per(frames), writing.per(frames)


def time_taef2(image: torch.Tensor) -> tuple[float, float]:
    from dotrestore.codecs.bundled import load_bundled_taef2

    codec = load_bundled_taef2("cpu")
    with torch.inference_mode(), Clock() as clock:
        codec.decode(codec.encode(image[None]), size=tuple(image.shape[1:]))
    return clock.per(1)


def row(name: str, seconds: tuple[float, float]) -> str:
    wall, cpu = seconds
    return f"  {name:<40s} {wall * 1000:9.1f} ms/frame ({1 / wall:6.1f} frames/s)  CPU {cpu * 1000:9.1f} ms"


def ratio(a: tuple[float, float], b: tuple[float, float]) -> str:
    return f"{a[0] / b[0]:.3f} (CPU time: {a[1] / b[1]:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--png-frames", type=int, default=12)
    parser.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-codec", action="store_true")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    codec_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    pan = Pan(panorama(height, width + PAN * args.frames, args.kodak), width)
    content = "Kodak photographs" if args.kodak.is_dir() else "smooth random fields (no Kodak folder)"
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work = Path(work)
        source = work / "source.mp4"
        make_source(source, pan, args.frames)
        info = probe(source, max_pixels=None)
        results = {
            "decode H.264 (mp4) -> tensors": time_read(source),
            "  of which FFmpeg's decoder": time_decode_only(source),
            "encode tensors -> FFV1 (mkv)": time_write(work / "out.mkv", info, pan, args.frames),
            "encode tensors -> H.264 CRF 18 (mp4)": time_write(work / "out.mp4", info, pan, args.frames),
        }
        results["decode FFV1 (mkv) -> tensors"] = time_read(work / "out.mkv")
        results["  of which FFmpeg's decoder "] = time_decode_only(work / "out.mkv")
        probes = {"H.264": time_probe(source), "FFV1": time_probe(work / "out.mkv")}
        (work / "png").mkdir()
        png_read, png_write = time_png(work / "png", pan, args.png_frames)
        results["read PNG -> tensor"], results["write tensor -> PNG"] = png_read, png_write
        sizes = {p.suffix if p.stem == "out" else p.stem: p.stat().st_size / args.frames / 1e6
                 for p in (source, work / "out.mkv", work / "out.mp4")}
    print(f"video I/O at {width}x{height}, {args.frames} frames of a pan over {content}")
    print(f"  (torch threads {args.threads}, TAEF2 "
          f"{codec_threads}; source H.264 {sizes['source']:.3f}, FFV1 {sizes['.mkv']:.2f}, "
          f"H.264 {sizes['.mp4']:.3f} MB/frame)")
    for name, seconds in results.items():
        print(row(name, seconds))
    print("  probe, once per clip (all packets demuxed, one frame decoded): "
          + ", ".join(f"{name} {wall * 1000:.0f} ms" for name, (wall, _) in probes.items()))
    read, write = results["decode H.264 (mp4) -> tensors"], results["encode tensors -> FFV1 (mkv)"]
    clip = (read[0] + write[0], read[1] + write[1])
    pngs = (png_read[0] + png_write[0], png_read[1] + png_write[1])
    print(f"  clip I/O (decode H.264 + encode FFV1) / PNG I/O (read + write): {ratio(clip, pngs)}")
    if not args.no_codec:
        torch.set_num_threads(codec_threads)  # the codec runs as DOT runs it
        codec = time_taef2(pan(0))
        print(row("TAEF2 encode + decode (one frame)", codec))
        print(f"  clip I/O / TAEF2 encode + decode: {ratio(clip, codec)}")


if __name__ == "__main__":
    main()
