"""Video files with PyAV (torchvision 0.29 no longer has ``read_video``): decode to uint8 frames and
write small test/synthetic videos."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from nft_core.errors import DataError

__all__ = ["read_frames", "write_video"]


def read_frames(path: str | os.PathLike, step: int = 1) -> np.ndarray:
    """Every ``step``-th decoded frame of ``path`` as uint8 ``(T, H, W, 3)`` RGB.

    Raises :class:`DataError` (one line, naming the file) for a missing, corrupt or frameless video."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: video file not found")
    frames = []
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise DataError(f"{p}: no video stream")
            for i, frame in enumerate(container.decode(video=0)):
                if i % step == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise DataError(f"{p}: cannot decode video ({type(e).__name__}: {e})") from e
    if not frames:
        raise DataError(f"{p}: video has no frames")
    return np.stack(frames)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4",
                bit_rate: int = 4_000_000) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames (H, W even for yuv420p codecs) as a video file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    with av.open(str(p), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        stream.codec_context.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return p
