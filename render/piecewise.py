"""Piecewise-affine backward warp of a triangle mesh, the mesh renderer's per-pixel work
(docs/design.md, "Renderer", "Mesh renderer").

Pixel coordinates are centred: pixel ``(i, j)`` of an ``S``-pixel frame is at ``(j − c, i − c)``,
``c = (S − 1)/2``. Each output pixel lies in one driven triangle; its barycentric coordinates
there, applied to the triangle's source vertices, give where to sample the source.

Finding the triangle is the costly part, done per ``tile``×``tile`` block of pixels: a tile keeps
the first ``candidates`` triangles (in the mesh's order) whose driven shape may hold one of its
pixel centres (bounding-box test, then a separating-axis test along each edge), and each pixel
takes the candidate whose smallest barycentric coordinate is largest: the containing triangle
whenever it is among the candidates, else the nearest one's affine map continued a little past
its edge. The candidates are ranked by a cumulative count and a scatter (XLA:CPU's ``top_k``
and sort are ~15× slower), and compared in a planar running maximum (pixels on the fast axis).
Sampling is bilinear with the source stored once as a ``[S·S, 12]`` table of each pixel's 2×2
neighbourhood (one row gather per pixel), as ``render/warp.py`` does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def neighbour_table(source: jnp.ndarray) -> jnp.ndarray:
    """``[S, S, 3]`` → ``[S·S, 12]``: each pixel with its right, lower and lower-right
    neighbours (edge-replicated), so bilinear sampling is one row gather per pixel."""
    padded = jnp.pad(source, ((0, 1), (0, 1), (0, 0)), mode="edge")
    h, w = source.shape[:2]
    table = jnp.concatenate([padded[:h, :w], padded[:h, 1:], padded[1:, :w], padded[1:, 1:]], -1)
    return table.reshape(h * w, 12)


def areas(points, triangles):
    """Twice the signed areas ``[..., T]`` of ``points [..., N, 2]``."""
    a, b, c = (points[..., triangles[:, i], :] for i in range(3))
    return ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
            - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))


def _barycentric(points, triangles):
    """Per triangle, its barycentric coordinates as affine functions of the pixel:
    ``[B, T, 3, 3]`` (vertex, (x, y, 1)); a (near-)degenerate triangle gets −1e9 everywhere."""
    a, b, c = (points[:, triangles[:, i]] for i in range(3))                   # [B, T, 2]
    area2 = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) \
        - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
    valid = jnp.abs(area2) > 0.05
    inv = jnp.where(valid, 1.0 / jnp.where(valid, area2, 1.0), 0.0)[..., None]

    def opposite(p, q):      # the coordinate of the vertex facing edge p→q
        return jnp.stack([p[..., 1] - q[..., 1], q[..., 0] - p[..., 0],
                          p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]], -1) * inv

    lam = jnp.stack([opposite(b, c), opposite(c, a), opposite(a, b)], -2)
    return jnp.where(valid[..., None, None], lam, jnp.asarray([0.0, 0.0, -1e9]))


def source_coords(source_points, triangles, points, size: int, tile: int, candidates: int):
    """The source position of every output pixel of an ``size``-pixel frame, ``(x, y)`` each
    ``[B, S, S]``: the mesh ``triangles [T, 3]`` over ``source_points [N, 2]`` moved to
    ``points [B, N, 2]`` (all centred pixels), looked up per ``tile``-pixel tile among its first
    ``candidates`` overlapping triangles."""
    m, tri = candidates, triangles
    n_tri = tri.shape[0]
    lam = _barycentric(points, tri)                                            # [B, T, 3, 3]
    to_source = jnp.einsum("tvk,btvc->btkc", source_points[tri], lam)         # [B, T, 2, 3]
    nt = -(-size // tile)
    c = (size - 1) / 2.0
    lo = jnp.arange(nt, dtype=jnp.float32) * tile - c          # first / last pixel centre of
    hi = lo + (tile - 1)                                       # each tile column (and row)
    corners = points[:, tri]                                                   # [B, T, 3, 2]
    box_lo, box_hi = corners.min(axis=2), corners.max(axis=2)                 # [B, T, 2]
    ox = (box_lo[:, None, :, 0] <= hi[:, None] + 0.5) & (box_hi[:, None, :, 0] >= lo[:, None] - 0.5)
    oy = (box_lo[:, None, :, 1] <= hi[:, None] + 0.5) & (box_hi[:, None, :, 1] >= lo[:, None] - 0.5)
    # Separating-axis test along the edges: the tile holds a pixel on the inner side of each
    # edge (the largest barycentric coordinate over the tile's corners is not negative).
    lx, ly, l0 = lam[..., 0], lam[..., 1], lam[..., 2]                        # [B, T, 3]
    mx = jnp.maximum(lx[:, None] * lo[None, :, None, None], lx[:, None] * hi[None, :, None, None])
    my = jnp.maximum(ly[:, None] * lo[None, :, None, None], ly[:, None] * hi[None, :, None, None])
    edges = jnp.all(my[:, :, None] + mx[:, None] + l0[:, None, None] >= -1e-3, axis=-1)
    overlap = oy[:, :, None] & ox[:, None] & edges                            # [B, nt, nt, T]
    # The first m overlapping triangles of each tile, by scattering each overlap to its rank
    # (XLA:CPU's top_k and sort are ~15× slower).
    count = jnp.cumsum(overlap.astype(jnp.int32), axis=-1)                     # [B, nt, nt, T]
    slot = jnp.where(overlap & (count <= m), count - 1, m)                     # m: discarded
    b = points.shape[0]
    bi, yi, xi = (i[..., None] for i in jnp.meshgrid(jnp.arange(b), jnp.arange(nt),
                                                     jnp.arange(nt), indexing="ij"))
    cand = jnp.zeros((b, nt, nt, m + 1), jnp.int32).at[bi, yi, xi, slot].set(
        jnp.broadcast_to(jnp.arange(n_tri, dtype=jnp.int32), overlap.shape))[..., :m]
    found = count[..., -1:] > jnp.arange(m, dtype=jnp.int32)                   # [B, nt, nt, M]
    # Per candidate: its 3 barycentric functions and its map to the source, 15 coefficients.
    table = jnp.concatenate([lam.reshape(lam.shape[:2] + (9,)),
                             to_source.reshape(to_source.shape[:2] + (6,))], -1)  # [B, T, 15]
    coef = jax.vmap(lambda t, i: t[i])(table, cand)                            # [B,nt,nt,M,15]
    coef = jnp.where(found[..., None], coef, jnp.asarray([0.0, 0.0, -1e9] + [0.0] * 12))
    offsets = jnp.arange(tile, dtype=jnp.float32)
    x = (lo[:, None] + offsets)[None, None, None]                              # [1,1,1,nt,t]
    y = (lo[:, None] + offsets)[None, :, :, None, None]                        # [1,nt,t,1,1]
    # Planar running maximum over the candidates (pixels on the fast axis vectorise ~2× better
    # than candidates there): each pixel keeps the source position of the candidate whose
    # smallest barycentric coordinate is largest. A scan, not an unrolled loop: its result is
    # materialised, whereas XLA fuses an unrolled chain into the sampling gather and recomputes
    # it per use (~100× slower).
    def step(carry, k):
        best, sx, sy = carry
        k = k[:, :, None, :, None]                                             # [B,nt,1,nt,1,15]
        score = jnp.minimum(jnp.minimum(
            k[..., 0] * x + k[..., 1] * y + k[..., 2], k[..., 3] * x + k[..., 4] * y + k[..., 5]),
            k[..., 6] * x + k[..., 7] * y + k[..., 8])
        better = score > best
        return (jnp.where(better, score, best),
                jnp.where(better, k[..., 9] * x + k[..., 10] * y + k[..., 11], sx),
                jnp.where(better, k[..., 12] * x + k[..., 13] * y + k[..., 14], sy)), None

    shape = (b, nt, tile, nt, tile)
    init = (jnp.full(shape, -jnp.inf), jnp.zeros(shape), jnp.zeros(shape))
    (_, sx, sy), _ = jax.lax.scan(step, init, jnp.moveaxis(coef, 3, 0), unroll=8)
    side = nt * tile
    return (sx.reshape(b, side, side)[:, :size, :size], sy.reshape(b, side, side)[:, :size, :size])


def sample(table, sx, sy, size):
    """Bilinear, border-clamped sampling of the ``[S·S, 12]`` table at centred pixel positions
    ``sx, sy [B, S, S]`` → ``[B, S, S, 3]``."""
    c = (size - 1) / 2.0
    ix = jnp.clip(sx + c, 0.0, size - 1.0)
    iy = jnp.clip(sy + c, 0.0, size - 1.0)
    x0 = jnp.minimum(jnp.floor(ix), size - 2)
    y0 = jnp.minimum(jnp.floor(iy), size - 2)
    fx, fy = (ix - x0)[..., None], (iy - y0)[..., None]
    rows = jnp.take(table, (y0 * size + x0).astype(jnp.int32), axis=0, mode="clip")
    top = rows[..., 0:3] + fx * (rows[..., 3:6] - rows[..., 0:3])
    bottom = rows[..., 6:9] + fx * (rows[..., 9:12] - rows[..., 6:9])
    return top + fy * (bottom - top)
