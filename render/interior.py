"""What the mesh renderer cannot take from the source: the inside of an opening mouth and a lid
closing over the eye (docs/design.md, "Renderer", "Mesh renderer").

Both are drawn per frame in small windows around the mouth and the eyes (sizes fixed per source,
``windows``), in a frame whose axis joins the corners (inner-lip corners 60→64; eye corners
36→39, 42→45).

- Mouth: the inner lips are smooth curves ``Σ c_k sin(kπt)`` through landmarks 61–63 and 67–65
  (zero at the corners). Where the driven gap exceeds the source's gap at the same place along
  the mouth (scaled with the mouth's width), the revealed share ``(gap − gap_src)/gap`` is
  painted: a cavity of the lip colour darkened (darkest deep in the middle), upper teeth hanging
  from the upper lip whose visible height follows the gap (``TEETH_SHARE`` of it, at most
  ``TEETH_MAX`` of the mouth's width), and, when it opens wide, the tongue and a band of lower
  teeth. Edges are anti-aliased over a pixel and the rim is shaded, so the warped lips meet the
  painting without a seam. A source whose mouth is open (a smile on its teeth) keeps its own
  interior at its own scale, never stretched: the upper ``SOURCE_UPPER_SHARE`` of it hangs from
  the upper lip, the rest rises with the lower lip, the painted cavity shows between them as
  the mouth opens further, and a closing mouth hides their inner rows behind the lips.
- Eyes: the mesh holds each eye at least as open as in the source (``hold_eyes_open``), so a
  blink does not squash the eye. The closed share of its height is covered by the upper lid:
  the skin above it (``LID_REACH`` of the eye's width, at most half way to the brow) is
  stretched down over the eye by resampling the frame along the eye's normal, the lid's own
  edge (lashes, liner) moved down whole so that it ends at the driven lid; a shut eye's lid
  reaches the lower lid's margin.
"""
from __future__ import annotations

import dataclasses
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np

from syncers.data import anatomy

MOUTH_PAIRS = tuple(zip(anatomy.UPPER_INNER_LIP.tolist(), anatomy.LOWER_INNER_LIP.tolist()))
UPPER_INNER = (60, 61, 62, 63, 64)
LOWER_INNER = (60, 67, 66, 65, 64)
# per eye: corners, upper lid, lower lid (each lid listed from the first corner)
EYES = (((36, 39), (37, 38), (41, 40)), ((42, 45), (43, 44), (47, 46)))
BROW_OF_EYE = (tuple(anatomy.LEFT_BROW.tolist()), tuple(anatomy.RIGHT_BROW.tolist()))
UPPER_LID_SHARE = 1.0      # of a blink's closure, the share the upper lid travels (the lower
                           # lid's rise squeezed the bright skin below it into a pale line)
TEETH_SHARE = 0.45         # visible upper teeth: this share of the gap ...
TEETH_MAX = 0.17           # ... up to this share of the inner mouth's width
TEETH_COLOUR = (0.93, 0.90, 0.84)
SHUT = 0.15               # an eye driven below this share of its height is drawn shut
LID_REACH = 0.4          # skin above the upper lid that stretches over a closing eye, of its width
BROW_CLEARANCE = 0.5     # ... at most this share of the way up to the brow's landmarks (the brow's
                         # hairs reach below them: stretched, they dragged down over the eye)
MIN_LID_REACH = 0.15     # ... and at least this share of the eye's width
LASH_BAND = 0.06         # the lid's edge (lashes, liner) that moves down unstretched, of the width
SOURCE_UPPER_SHARE = 0.75  # of an open photo's interior, the share that hangs from the upper lip
                           # (upper teeth move with the skull, the rest with the jaw)


@flax.struct.dataclass
class Colours:
    """Colours sampled from the source at ``prepare``: lips ``[3]`` and the face's luminance
    ``[]`` (teeth are dimmed on a dark face)."""

    lips: jnp.ndarray
    luminance: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Windows:
    """Window sizes ``(height, width)`` in pixels for the mouth and for each eye (static)."""

    mouth: tuple[int, int]
    eye: tuple[int, int]


def _axis(a: jnp.ndarray, b: jnp.ndarray):
    """Unit axis ``a → b``, its normal (the axis turned +90°: down for a level face, y down)
    and the length, each with the leading shape of ``a``."""
    d = b - a
    length = jnp.maximum(jnp.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    e = d / length
    return e, jnp.stack([-e[..., 1], e[..., 0]], -1), length[..., 0]


def _open_pairs(lm, corners, pairs, gap, upper_share):
    """Move each (upper, lower) pair apart along the corners' normal until the lower point is
    ``gap`` (share of the corner distance) below the upper one."""
    _, n, width = _axis(lm[..., corners[0], :], lm[..., corners[1], :])
    for up, low in pairs:
        g = jnp.sum((lm[..., low, :] - lm[..., up, :]) * n, axis=-1)
        deficit = jnp.maximum(gap * width - g, 0.0)[..., None]
        lm = lm.at[..., up, :].add(-upper_share * deficit * n)
        lm = lm.at[..., low, :].add((1.0 - upper_share) * deficit * n)
    return lm


def uncross(landmarks: jnp.ndarray, mouth_gap: float, eye_gap: float | None = None
            ) -> jnp.ndarray:
    """Landmarks ``[..., 68, 2]`` with the inner lips (and, with ``eye_gap``, the lids) at least
    that share of the mouth's (eye's) width apart: a lower lip above the upper one would fold
    the mesh."""
    lm = _open_pairs(landmarks, anatomy.MOUTH_CORNERS, MOUTH_PAIRS, mouth_gap, 0.5)
    if eye_gap is not None:
        for corners, upper, lower in EYES:
            lm = _open_pairs(lm, corners, tuple(zip(upper, lower)), eye_gap, 0.5)
    return lm


def hold_eyes_open(driving: jnp.ndarray, source: jnp.ndarray) -> jnp.ndarray:
    """Driving landmarks ``[B, 68, 2]`` whose lids are at least as far apart as in the source
    ``[68, 2]`` (scaled by the eye's width): the mesh keeps the eye; ``paint`` draws the lid."""
    out = driving
    for corners, upper, lower in EYES:
        _, n_s, w_s = _axis(source[corners[0]], source[corners[1]])
        _, n_d, w_d = _axis(driving[:, corners[0]], driving[:, corners[1]])
        for up, low in zip(upper, lower):
            held = jnp.sum((source[low] - source[up]) * n_s) / w_s * w_d            # [B]
            g = jnp.sum((driving[:, low] - driving[:, up]) * n_d, axis=-1)
            deficit = jnp.maximum(held - g, 0.0)[:, None]
            out = out.at[:, up].add(-UPPER_LID_SHARE * deficit * n_d)
            out = out.at[:, low].add((1.0 - UPPER_LID_SHARE) * deficit * n_d)
    return out


def _patch_mean(image: np.ndarray, points_px: np.ndarray, radius: int) -> np.ndarray:
    size = image.shape[0]
    values = []
    for x, y in np.round(points_px).astype(int):
        x0, x1 = np.clip([x - radius, x + radius + 1], 0, size)
        y0, y1 = np.clip([y - radius, y + radius + 1], 0, size)
        values.append(image[y0:y1, x0:x1].reshape(-1, 3))
    return np.median(np.concatenate(values), axis=0)


def sample_colours(image: np.ndarray, landmarks: np.ndarray) -> Colours:
    """Colours of a source ``image [S, S, 3]`` with ``landmarks [68, 2]`` (normalised)."""
    size = image.shape[0]
    px = (np.asarray(landmarks, np.float64) + 1.0) * (size - 1) / 2.0
    radius = max(1, size // 128)
    lips = _patch_mean(image, (px[[50, 51, 52, 56, 57, 58]] + px[[61, 62, 63, 65, 66, 67]]) / 2,
                       radius)
    cheeks = _patch_mean(image, px[[29, 30, 2, 14]] * 0.7 + px[[30, 30, 30, 30]] * 0.3, 2 * radius)
    luminance = float(cheeks @ np.array([0.299, 0.587, 0.114]))
    return Colours(lips=jnp.asarray(lips, jnp.float32),
                   luminance=jnp.asarray(luminance, jnp.float32))


def windows(landmarks: np.ndarray, size: int) -> Windows:
    """Window sizes from the source's mouth and eye widths, rounded up to 8 pixels (so faces of
    similar size share one compilation) and at most the crop."""
    px = (np.asarray(landmarks, np.float64) + 1.0) * (size - 1) / 2.0
    mouth = np.linalg.norm(px[54] - px[48])
    eye = max(np.linalg.norm(px[39] - px[36]), np.linalg.norm(px[45] - px[42]))
    up8 = lambda v: int(min(size, 8 * math.ceil(max(v, 8) / 8)))
    return Windows(mouth=(up8(1.3 * mouth), up8(1.6 * mouth)), eye=(up8(1.6 * eye), up8(1.6 * eye)))


def _curve(u, knots_u, knots_w):
    """A piecewise-linear curve through ``(knots_u, knots_w) [n]`` at ``u [h, w]`` (knots made
    non-decreasing in u first: a profile face can bend them back)."""
    return jnp.interp(u, jax.lax.cummax(knots_u), knots_w)


def _local(points, origin, e, n):
    d = points - origin
    return d @ e, d @ n


def _smooth(x):
    x = jnp.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _sines(t, knots_t, knots_w):
    """The curve ``Σ_k c_k sin(kπt)``, k = 1..n (zero at both corners), through n = 2 or 3
    knots ``(knots_t, knots_w) [n]``, at ``t [h, w]``: a smooth lip or lid between its corners
    (it bulges past the straight segments between the landmarks, as lips and lids do)."""
    n = knots_t.shape[0]
    knots_t = jnp.clip(knots_t, 0.02, 0.98)
    k = jnp.arange(1, n + 1, dtype=jnp.float32)
    basis = jnp.sin(jnp.pi * knots_t[:, None] * k)                           # [n, n]
    # a touch of ridge keeps coinciding knots (a profile face) solvable
    coef = _solve(basis.T @ basis + 1e-4 * jnp.eye(n), basis.T @ knots_w)
    return jnp.sin(jnp.pi * t[..., None] * k) @ coef


def _solve(m, b):
    """``m⁻¹ b`` for one 2×2 or 3×3 system by cofactors (``jnp.linalg.solve`` compiles ~10×
    slower under ``vmap``)."""
    if m.shape[0] == 2:
        cof = jnp.stack([jnp.stack([m[1, 1], -m[1, 0]]), jnp.stack([-m[0, 1], m[0, 0]])])
    else:
        cof = jnp.stack([jnp.cross(m[1], m[2]), jnp.cross(m[2], m[0]), jnp.cross(m[0], m[1])])
    return cof.T @ b / jnp.dot(m[0], cof[0])


def _lips(lm, t):
    """Inner-lip curves of one face ``lm [68, 2]`` at ``t [h, w]`` (0..1 from corner 60 to 64):
    ``(upper, lower)`` distances below the corner line, pixels."""
    e, n, width = _axis(lm[60], lm[64])
    out = []
    for points in (UPPER_INNER, LOWER_INNER):
        ku, kw = _local(lm[np.array(points[1:4])], lm[60], e, n)
        out.append(_sines(t, ku / width, kw))
    return out


def _mouth(xy, lm, source, colours, source_image):
    """Colour ``[h, w, 3]`` and alpha ``[h, w]`` of the mouth interior at pixels ``xy [h, w, 2]``
    (centred pixels) for one frame's landmarks ``lm [68, 2]`` (source ``[68, 2]``, same units;
    its image ``[S, S, 3]``).
    The lips are smooth curves through the inner-lip landmarks (the mesh's lips are straight
    between them; the curves leave at most a pixel of stretched lip visible inside)."""
    e, n, width = _axis(lm[60], lm[64])
    u, w = _local(xy, lm[60], e, n)
    along = u / width                                      # 0..1 corner to corner
    w_up, w_lo = _lips(lm, along)
    gap = w_lo - w_up
    inside = jnp.clip(jnp.minimum(w - w_up, w_lo - w) + 0.5, 0.0, 1.0)
    inside = jnp.where((along > 0) & (along < 1), inside, 0.0)
    # Never beyond the driven outer lips: twisted lips (a generator's bad frame) can bend the
    # inner curves far outside the mouth, which painted cavities over the cheek.
    alpha = inside * jnp.clip(gap, 0.0, 1.0) * _inside_polygon(xy, lm[anatomy.OUTER_LIPS])

    along = jnp.clip(along, 0.0, 1.0)
    below_upper, above_lower = w - w_up, w_lo - w          # pixels from each lip
    middle = jnp.sin(jnp.pi * along)
    wide = _smooth(gap / (0.35 * width))                   # 0 closed … 1 wide open
    lips = colours.lips
    # cavity: the lip colour darkened, darkest deep in the middle of a well-opened mouth
    depth = middle * _smooth(gap / (0.12 * width)) * _smooth(jnp.minimum(below_upper,
                                                                          above_lower) / 3.0)
    colour = lips * (0.38 - 0.24 * depth)[..., None]
    tongue_mask = _smooth((0.35 * gap - above_lower) / (0.2 * gap + 1e-3)) \
        * _smooth((wide - 0.5) / 0.5) * middle
    colour = colour + (lips * 0.6 - colour) * tongue_mask[..., None]
    # upper teeth hang from the upper lip; the visible height follows the gap
    teeth_h = jnp.minimum(TEETH_SHARE * gap, TEETH_MAX * width)
    lateral = _smooth((along - 0.1) / 0.16) * _smooth((0.9 - along) / 0.16)
    teeth_mask = jnp.clip(teeth_h - below_upper + 0.5, 0.0, 1.0) * lateral
    brightness = jnp.clip(colours.luminance / 0.55, 0.8, 1.05)
    separations = 1.0 - 0.12 * (0.5 + 0.5 * jnp.cos(2 * jnp.pi * (along - 0.5) * 6.0)) ** 8
    shade = (0.6 + 0.4 * middle) * separations * (1.0 - 0.2 * _smooth(
        below_upper / jnp.maximum(teeth_h, 1e-3)))
    teeth = jnp.asarray(TEETH_COLOUR) * (brightness * shade)[..., None]
    colour = colour + (teeth - colour) * teeth_mask[..., None]
    # the lower teeth show, dimmer, only when the mouth opens wide
    lower_h = 0.05 * width * _smooth((wide - 0.7) / 0.3)
    lower_mask = jnp.clip(lower_h - above_lower + 0.5, 0.0, 1.0) * lateral * 0.7
    colour = colour + (teeth * 0.7 - colour) * lower_mask[..., None]
    # a soft shadow of the lips on the rim
    # (inside the lips only: outside, the distances are negative and exp would overflow to inf,
    # and inf × 0 made NaN pixels where twisted lips put the curves far apart)
    rim = 1.0 - 0.15 * jnp.exp(-jnp.maximum(jnp.minimum(below_upper, above_lower), 0.0) / 1.2)
    colour = colour * rim[..., None]
    # The source's own interior (an open photo's teeth), unstretched: its upper share hangs
    # from the upper lip and the rest rises with the lower lip, at the face's scale (eye corner
    # to eye corner), not the mouth's: a wider mouth shows the painted cavity between them, a
    # narrower or rounder one hides their edges behind the lips (cropped, not squashed: teeth
    # do not change size).
    s_e, s_n, s_width = _axis(source[60], source[64])
    to_source = jnp.linalg.norm(source[45] - source[36]) \
        / jnp.maximum(jnp.linalg.norm(lm[45] - lm[36]), 1e-6)
    u_source = s_width / 2.0 + (u - width / 2.0) * to_source
    along_source = u_source / s_width
    s_up, s_lo = _lips(source, along_source)
    within = (along_source > 0.0) & (along_source < 1.0)
    held = jnp.where(within, jnp.maximum(s_lo - s_up, 0.0) / to_source, 0.0)   # this frame's px
    shrink = jnp.minimum(1.0, gap / jnp.maximum(held, 1e-3))
    upper_h = SOURCE_UPPER_SHARE * held * shrink
    lower_h = (1.0 - SOURCE_UPPER_SHARE) * held * shrink
    from_upper = source[60] + u_source[..., None] * s_e \
        + (s_up + below_upper * to_source)[..., None] * s_n
    from_lower = source[60] + u_source[..., None] * s_e \
        + (s_lo - above_lower * to_source)[..., None] * s_n
    centre = (source_image.shape[0] - 1) / 2.0
    pick = lambda p: _bilinear(source_image, p[..., 0] + centre, p[..., 1] + centre)
    # the cavity shows only where the mouth is open wider than the photo's (so no dark seam
    # between the two parts of a narrower one), split between them in its middle
    extra = jnp.maximum(gap - held, 0.0)
    cavity = jnp.clip(below_upper - upper_h + 0.5, 0.0, 1.0) \
        * jnp.clip(above_lower - lower_h + 0.5, 0.0, 1.0) * jnp.clip(extra, 0.0, 1.0)
    upper = jnp.clip(upper_h + extra / 2.0 - below_upper + 0.5, 0.0, 1.0)
    own = pick(from_lower) + (pick(from_upper) - pick(from_lower)) * upper[..., None]
    return own + (colour - own) * cavity[..., None], alpha


def _inside_polygon(xy, polygon):
    """``[h, w]`` 1.0 where the pixels ``xy [h, w, 2]`` lie inside the closed ``polygon [n, 2]``
    (even-odd crossings of a ray along +x), else 0.0."""
    a, b = polygon, jnp.roll(polygon, -1, axis=0)                          # edges a → b
    x, y = xy[..., None, 0], xy[..., None, 1]
    straddles = (a[:, 1] > y) != (b[:, 1] > y)
    t = (y - a[:, 1]) / jnp.where(b[:, 1] == a[:, 1], 1e-9, b[:, 1] - a[:, 1])
    crossing = straddles & (x < a[:, 0] + t * (b[:, 0] - a[:, 0]))
    return (jnp.sum(crossing, axis=-1) % 2).astype(xy.dtype)


def _eye(xy, patch, origin, held, driven, brow):
    """Lids closing over one eye: ``held``/``driven`` ``[6, 2]`` (corners, upper lid, lower lid,
    as the mesh has them and as driven). The closed share of the eye's height (at each lid
    point, interpolated between them) is covered by stretching the skin above the upper lid
    (``LID_REACH`` of the eye's width) down, and (with ``UPPER_LID_SHARE`` < 1) the skin below
    the lower lid up, by resampling ``patch [h, w, 3]`` (whose pixel (0, 0) is at ``origin``)
    along the eye's normal: the lid's own edge (lashes, liner) ends up at the driven lid. The skin
    stretched stops below the brow (``BROW_CLEARANCE`` of the way up to ``brow [5, 2]``, its
    landmarks as driven). An eye driven below ``SHUT`` of its height is drawn shut (landmarks of
    a closed eye rarely meet)."""
    e, n, width = _axis(held[0], held[1])
    u, w = _local(xy, held[0], e, n)
    curves = []
    for lid in ((0, 2, 3, 1), (0, 4, 5, 1)):
        ku, kw = _local(held[np.array(lid)], held[0], e, n)
        curves.append(_curve(u, ku, kw))
    upper, lower = curves
    # The lower lid's margin bulges below the straight segments between its landmarks, most
    # near the corners, where the eye's white shows beneath them: a shutting lid goes there.
    ku, kw = _local(held[4:6], held[0], e, n)
    below = jnp.maximum(_sines(u / width, ku / width, kw) - lower, 0.0) + 0.06 * width
    gap_held = jnp.sum((held[4:6] - held[2:4]) * n, -1)                      # [2] at the lids
    gap_driven = jnp.sum((driven[4:6] - driven[2:4]) * n, -1)
    shown = jnp.clip((gap_driven / jnp.maximum(gap_held, 1e-3) - SHUT) / (1.0 - SHUT), 0.0, 1.0)
    knots = _local(held[2:4], held[0], e, n)[0]
    closed = (1.0 - jnp.interp(u, jax.lax.cummax(knots), shown)) * jnp.maximum(lower - upper, 0.0)
    closed = closed * (1.0 + below / jnp.maximum(lower - upper, 1e-3))
    s_up, s_lo = UPPER_LID_SHARE * closed, (1.0 - UPPER_LID_SHARE) * closed
    bu, bw = _local(brow, held[0], e, n)
    order = jnp.argsort(bu)
    brow_w = jnp.interp(u, bu[order], bw[order])        # the brow above each column
    reach_up = jnp.clip(BROW_CLEARANCE * (upper - brow_w), MIN_LID_REACH * width,
                        LID_REACH * width)
    reach_lo = 0.5 * LID_REACH * width
    top, bottom = upper - reach_up, lower + reach_lo
    # The landmarks sit on the lid margins, whose pixels may already be the eye's white: a
    # closing lid's edge comes from a little further out (none when it does not close).
    inset_up = jnp.minimum(0.05 * width, s_up)
    inset_lo = jnp.minimum(0.12 * width, s_lo)
    upper_zone = w < upper + s_up + 0.5                 # the lid's edge, anti-aliased
    # The lashes' band at the lid's edge moves down whole; the skin above it stretches.
    lashes = LASH_BAND * width
    band = w >= upper + s_up - lashes
    stretched = top + (w - top) * (reach_up - inset_up - lashes) / (reach_up + s_up - lashes)
    w_src = jnp.where(upper_zone, jnp.where(band, w - s_up - inset_up, stretched),
                      bottom - (bottom - w) * (reach_lo - inset_lo) / (reach_lo + s_lo))
    alpha = jnp.where(upper_zone, jnp.clip(upper + s_up - w + 0.5, 0.0, 1.0) * (w >= top),
                      jnp.clip(w - (lower - s_lo) + 0.5, 0.0, 1.0) * (w <= bottom))
    alpha = alpha * ((u > 0) & (u < width))
    local = xy - (w - w_src)[..., None] * n - origin                          # [h, w, 2]
    return _bilinear(patch, local[..., 0], local[..., 1]), alpha


def _bilinear(image, x, y):
    """``image [h, w, 3]`` sampled bilinearly at pixel positions ``x, y [...]`` (clamped)."""
    h, w = image.shape[:2]
    x, y = jnp.clip(x, 0.0, w - 1.0), jnp.clip(y, 0.0, h - 1.0)
    x0, y0 = jnp.minimum(jnp.floor(x), w - 2), jnp.minimum(jnp.floor(y), h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    flat = image.reshape(h * w, 3)
    at = lambda dy, dx: jnp.take(flat, ((y0 + dy) * w + x0 + dx).astype(jnp.int32), axis=0)
    top = at(0, 0) + fx * (at(0, 1) - at(0, 0))
    return top + fy * (at(1, 0) + fx * (at(1, 1) - at(1, 0)) - top)


def _window_origin(centre, shape, size):
    h, w = shape
    c = (size - 1) / 2.0
    x0 = jnp.clip(jnp.round(centre[0] + c - (w - 1) / 2.0), 0, size - w).astype(jnp.int32)
    y0 = jnp.clip(jnp.round(centre[1] + c - (h - 1) / 2.0), 0, size - h).astype(jnp.int32)
    return y0, x0


def _blend_window(frame, centre, shape, paint_fn):
    """Paint one window of ``frame [S, S, 3]`` centred near ``centre`` (centred pixels)."""
    size = frame.shape[0]
    y0, x0 = _window_origin(centre, shape, size)
    c = (size - 1) / 2.0
    ys = (y0 - c) + jnp.arange(shape[0], dtype=jnp.float32)
    xs = (x0 - c) + jnp.arange(shape[1], dtype=jnp.float32)
    xy = jnp.stack(jnp.meshgrid(xs, ys, indexing="xy"), -1)               # [h, w, 2]
    patch = jax.lax.dynamic_slice(frame, (y0, x0, 0), shape + (3,))
    colour, alpha = paint_fn(xy, patch, xy[0, 0])
    # only where it paints: a colour computed for pixels it leaves alone may be anything
    patch = jnp.where(alpha[..., None] > 0, patch + (colour - patch) * alpha[..., None], patch)
    return jax.lax.dynamic_update_slice(frame, patch, (y0, x0, 0))


def paint(frames, driving, held, source, colours: Colours, win: Windows, source_image):
    """Paint the mouth interior and closing lids onto ``frames [B, S, S, 3]``. ``driving``
    ``[B, 68, 2]`` are the driven landmarks (lips uncrossed), ``held`` ``[B, 68, 2]`` the mesh's
    (lids held open), ``source [68, 2]`` the source's, all in centred pixels; ``source_image``
    ``[S, S, 3]`` the source crop (its mouth's own interior is redrawn unstretched)."""
    def one(frame, lm, hl):
        frame = _blend_window(frame, lm[anatomy.INNER_LIPS].mean(axis=0), win.mouth,
                              lambda xy, patch, origin: _mouth(xy, lm, source, colours,
                                                               source_image))
        for (corners, upper, lower), brow in zip(EYES, BROW_OF_EYE):
            idx = list(corners) + list(upper) + list(lower)
            idx, brow = np.array(idx), np.array(brow)
            frame = _blend_window(frame, hl[idx].mean(axis=0), win.eye,
                                  lambda xy, patch, origin, idx=idx, brow=brow: _eye(
                                      xy, patch, origin, hl[idx], lm[idx], hl[brow]))
        return frame
    return jax.vmap(one)(frames, driving, held)
