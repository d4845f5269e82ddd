"""Piecewise-affine backward warp of a triangle mesh, the mesh renderer's per-pixel work
(docs/design.md, "Renderer", "Mesh renderer").

Pixel coordinates are centred: pixel ``(i, j)`` of an ``S``-pixel frame is at ``(j − c, i − c)``,
``c = (S − 1)/2``. Each output pixel lies in one driven triangle; its barycentric coordinates
there, applied to the triangle's source vertices, give where to sample the source.

Finding the triangle is the costly part, done per ``tile``×``tile`` block of pixels: a tile's
candidates are the triangles (in the mesh's order) whose driven shape may hold one of its pixel
centres (bounding-box test, then a separating-axis test along each edge), and each pixel takes
the candidate whose smallest barycentric coordinate is largest: the containing triangle
whenever it is among those tested, else the nearest one's affine map continued a little past
its edge. Most tiles overlap 1–4 triangles, a few (the mouth, the eyes) up to ~27: every tile
tests its first ``candidates``, and only the ``busy_tiles`` busiest test the rest of their
first ``busy_candidates``. Candidates are ranked by a cumulative count and a scatter (XLA:CPU's
``top_k`` and sort are ~15× slower) and compared in a running maximum over pixel blocks.
Sampling is bilinear with the source stored once as a ``[S·S, 12]`` table of each pixel's 2×2
neighbourhood (one row gather per pixel), ``render.sampling``, as ``render/warp.py`` does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from render import sampling

# The table is the shared sampler's (``render.sampling``), built once per source by the mesh.
neighbour_table = sampling.neighbour_table


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


def _tile_starts(size: int, tile: int):
    """Centred coordinate of the first pixel centre of each tile row (and column)."""
    return jnp.arange(-(-size // tile), dtype=jnp.float32) * tile - (size - 1) / 2.0


def _overlaps(points, triangles, lam, lo, tile: int):
    """``[B, nt, nt, T]``: whether driven triangle ``t`` may hold a pixel centre of tile
    ``(row, column)`` — bounding boxes overlap and, along each edge, the tile has a pixel on the
    inner side (the largest barycentric coordinate over its corners is not negative)."""
    hi = lo + (tile - 1)
    corners = points[:, triangles]                                             # [B, T, 3, 2]
    box_lo, box_hi = corners.min(axis=2), corners.max(axis=2)                 # [B, T, 2]
    ox = (box_lo[:, None, :, 0] <= hi[:, None] + 0.5) & (box_hi[:, None, :, 0] >= lo[:, None] - 0.5)
    oy = (box_lo[:, None, :, 1] <= hi[:, None] + 0.5) & (box_hi[:, None, :, 1] >= lo[:, None] - 0.5)
    lx, ly, l0 = lam[..., 0], lam[..., 1], lam[..., 2]                        # [B, T, 3]
    mx = jnp.maximum(lx[:, None] * lo[None, :, None, None], lx[:, None] * hi[None, :, None, None])
    my = jnp.maximum(ly[:, None] * lo[None, :, None, None], ly[:, None] * hi[None, :, None, None])
    edges = jnp.all(my[:, :, None] + mx[:, None] + l0[:, None, None] >= -1e-3, axis=-1)
    return oy[:, :, None] & ox[:, None] & edges


def tile_load(triangles, points, size: int, tile: int):
    """``[B]``: the most triangles any tile overlaps (a lookup with fewer ``candidates`` than
    this may miss a pixel's triangle in that tile)."""
    lam = _barycentric(points, triangles)
    overlap = _overlaps(points, triangles, lam, _tile_starts(size, tile), tile)
    return overlap.sum(axis=-1).max(axis=(1, 2))


def _running_best(coef, x, y, init, unroll: int):
    """Over candidates ``coef [..., M, 15]`` (3 barycentric functions, then the map to the
    source, each ``(x, y, 1)`` coefficients), the source position of the one whose smallest
    barycentric coordinate is largest at pixels ``x, y`` (``[..., t, t]`` after broadcasting);
    ``init = (score, sx, sy)``. A scan, not an unrolled loop: its result is materialised,
    whereas XLA fuses an unrolled chain into the sampling gather and recomputes it per use
    (~100× slower). Pixels are the fast axes (they vectorise ~2× better than candidates)."""
    def step(carry, k):
        best, sx, sy = carry
        k = k[..., None, None, :]                                              # [..., 1, 1, 15]
        score = jnp.minimum(jnp.minimum(
            k[..., 0] * x + k[..., 1] * y + k[..., 2], k[..., 3] * x + k[..., 4] * y + k[..., 5]),
            k[..., 6] * x + k[..., 7] * y + k[..., 8])
        better = score > best
        return (jnp.where(better, score, best),
                jnp.where(better, k[..., 9] * x + k[..., 10] * y + k[..., 11], sx),
                jnp.where(better, k[..., 12] * x + k[..., 13] * y + k[..., 14], sy)), None

    out, _ = jax.lax.scan(step, init, jnp.moveaxis(coef, -2, 0), unroll=unroll)
    return out


def source_coords(source_points, triangles, points, size: int, tile: int, candidates: int,
                  busy_tiles: int, busy_candidates: int, with_score: bool = False):
    """The source position of every pixel of one ``size``-pixel frame, ``(x, y)`` each
    ``[S, S]``: the mesh ``triangles [T, 3]`` over ``source_points [N, 2]`` moved to
    ``points [N, 2]`` (all centred pixels). Every ``tile``-pixel tile tests its first
    ``candidates`` overlapping triangles; the ``busy_tiles`` tiles that overlap more (a mouth
    pressed shut crowds ~25 slivers into one 8×8 tile) test the rest of their first
    ``busy_candidates`` too. With ``with_score``, also each pixel's smallest barycentric
    coordinate in the triangle it took ``[S, S]``: ≥ 0 inside it, < 0 where no tested triangle
    holds the pixel (the lookup continued the nearest one's map past its edge: a crack)."""
    tri, m1, m2 = triangles, candidates, busy_candidates
    n_tri = tri.shape[0]
    lam = _barycentric(points[None], tri)[0]                                   # [T, 3, 3]
    to_source = jnp.einsum("tvk,tvc->tkc", source_points[tri], lam)           # [T, 2, 3]
    nt = -(-size // tile)
    lo = _tile_starts(size, tile)
    overlap = _overlaps(points[None], tri, lam[None], lo, tile)[0]            # [nt, nt, T]
    # The first m2 overlapping triangles of each tile, by scattering each overlap to its rank
    # (XLA:CPU's top_k and sort are ~15× slower).
    count = jnp.cumsum(overlap.astype(jnp.int32), axis=-1)                     # [nt, nt, T]
    total = count[..., -1].reshape(nt * nt)                                    # [nt·nt]
    slot = jnp.where(overlap & (count <= m2), count - 1, m2)                   # m2: discarded
    yi, xi = (i[..., None] for i in jnp.meshgrid(jnp.arange(nt), jnp.arange(nt), indexing="ij"))
    cand = jnp.zeros((nt, nt, m2 + 1), jnp.int32).at[yi, xi, slot].set(
        jnp.broadcast_to(jnp.arange(n_tri, dtype=jnp.int32), overlap.shape))
    cand = cand[..., :m2].reshape(nt * nt, m2)
    table = jnp.concatenate([lam.reshape(n_tri, 9), to_source.reshape(n_tri, 6)], -1)
    invalid = jnp.asarray([0.0, 0.0, -1e9] + [0.0] * 12)

    def coefficients(tiles, ranks):          # [K] tiles, [M] ranks → [K, M, 15]
        c = table[cand[tiles][:, ranks]]
        return jnp.where((ranks < total[tiles][:, None])[..., None], c, invalid)

    offsets = jnp.arange(tile, dtype=jnp.float32)
    x = jnp.broadcast_to(lo[None, :, None, None] + offsets, (nt, nt, tile, tile))
    y = jnp.broadcast_to(lo[:, None, None, None] + offsets[:, None], (nt, nt, tile, tile))
    x, y = x.reshape(nt * nt, tile, tile), y.reshape(nt * nt, tile, tile)     # tile-major
    every = jnp.arange(nt * nt)
    start = (jnp.full(x.shape, -jnp.inf), jnp.zeros(x.shape), jnp.zeros(x.shape))
    best, sx, sy = _running_best(coefficients(every, jnp.arange(m1)), x, y, start, unroll=4)
    # The busy tiles (beyond m1 overlaps), compacted like the candidates; unused slots point
    # past the end, so their gathers clip and their scatters drop.
    busy = total > m1
    rank = jnp.cumsum(busy) - 1
    tiles = jnp.full(busy_tiles + 1, nt * nt, jnp.int32).at[
        jnp.where(busy & (rank < busy_tiles), rank, busy_tiles)].set(every)[:busy_tiles]
    kept = jnp.minimum(tiles, nt * nt - 1)
    more = _running_best(coefficients(kept, jnp.arange(m1, m2)), x[kept], y[kept],
                         (best[kept], sx[kept], sy[kept]), unroll=8)
    sx = sx.at[tiles].set(more[1], mode="drop")
    sy = sy.at[tiles].set(more[2], mode="drop")
    image = lambda a: a.reshape(nt, nt, tile, tile).transpose(0, 2, 1, 3).reshape(
        nt * tile, nt * tile)[:size, :size]
    if with_score:
        return image(sx), image(sy), image(best.at[tiles].set(more[0], mode="drop"))
    return image(sx), image(sy)


def sample(table, sx, sy, size):
    """Bilinear, border-clamped sampling of the ``[S·S, 12]`` table at centred pixel positions
    ``sx, sy [B, S, S]`` → ``[B, S, S, 3]`` (``render.sampling.bilinear``)."""
    c = (size - 1) / 2.0
    return sampling.bilinear(table, sx + c, sy + c, size, size)
