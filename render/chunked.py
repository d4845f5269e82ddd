"""The one chunk loop every renderer draws through (docs/design.md, "Renderer").

A renderer is a jitted function of a fixed number of driving frames; :func:`frames_in_chunks`
feeds it ``[chunk, K, 6]`` slices of the driving keypoints (the last one padded with its final
frame, so a video of any length compiles once) and yields the valid frames of each call in
order. Dispatch is asynchronous: the next chunk is queued before the previous one is copied out,
so the copy overlaps the computation.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np


def frames_in_chunks(render_chunk: Callable[[np.ndarray], Any], keypoints_TxKx6: np.ndarray,
                     chunk: int) -> Iterator[np.ndarray]:
    """Yield ``render_chunk``'s frames ``[n, S, S, 3]`` for ``keypoints [T, K, 6]``, ``chunk``
    driving frames per call (the last yield may be shorter; none for T = 0).

    ``render_chunk`` takes ``[chunk, K, 6]`` float32 and returns ``[chunk, S, S, 3]`` (a numpy
    or a JAX array, which may still be computing).
    """
    keypoints = np.asarray(keypoints_TxKx6, np.float32)
    chunk = max(1, int(chunk))
    pending = None
    for start in range(0, keypoints.shape[0], chunk):
        part = keypoints[start:start + chunk]
        valid = part.shape[0]
        if valid < chunk:
            part = np.concatenate([part, np.repeat(part[-1:], chunk - valid, axis=0)])
        frames = render_chunk(part)
        if pending is not None:
            yield np.asarray(pending[0][:pending[1]])
        pending = (frames, valid)
    if pending is not None:
        yield np.asarray(pending[0][:pending[1]])
