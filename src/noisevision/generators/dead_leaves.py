"""Dead-leaves images (Baradad et al., NeurIPS 2021, section 3.2; reference study section 2).

Leaves (squares, oriented squares, circles, rectangles, triangles, quadrilaterals), each inscribed
in a circle of random radius, with a uniform random RGB colour and a uniform random centre, are
painted on top of each other until the canvas is fully covered (at most `max_leaves` leaves;
pixels still uncovered then stay black, as in the reference).

Defaults follow the reference code that produced the published datasets, not the paper's text:
radii follow a truncated 1/r^3 power law on a 200-level grid in [0.03, 1] * resolution (the paper
says "exponential": available as ``radius_law="exponential"``), and the "Shapes" variant mixes six
kinds (the paper lists circles, triangles and rectangles: set ``shapes`` to get that).

Rendering is batched, with no per-leaf loop. Let first(p) be the smallest leaf index covering
pixel p and N = max_p first(p), the leaf at which the canvas becomes fully covered; pixel p shows
the colour of the largest leaf index <= N that covers it. Leaves are processed in chunks for all
images of a batch at once: every leaf is turned into row spans (one contiguous x-range per row,
since every leaf is convex), spans into (pixel, leaf) pairs, and ``scatter_reduce(amax)`` keeps
the topmost leaf per pixel. Images stop taking chunks once covered.

Where this differs from the reference (OpenCV drawing, Python/NumPy RNG):
- randomness: counter-based per-image draws (noisevision.rng), not `random.seed(i)`, so the images
  are not the released ones bit for bit; the laws are the same. Leaf k of image i is keyed by
  (seed, i, k // 256); sizes, centres and colours are shared by the variants for one seed.
- rasterisation: squares and rectangles are exact integer boxes as OpenCV draws them; circles
  paint the pixels whose centres lie within the radius; rotated squares, triangles and
  quadrilaterals paint the pixel centres within half a pixel of the polygon (OpenCV also paints
  its outline), and rotated corners are not re-rounded to integers. Edge pixels can differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from noisevision.errors import check
from noisevision.generators.base import Generator, check_resolution, register_generator
from noisevision.rng import ImageRandom, as_index_tensor

SHAPE_KINDS = ("circle", "square", "oriented_square", "rectangle", "triangle", "quadrilateral")
RADIUS_LAWS = ("power", "exponential")
LEAF_BLOCK = 256  # leaves drawn per random-stream block: image i's leaf k is keyed by (i, k // 256)
_POLY_TOL = 0.5  # a pixel centre within half a pixel outside a polygon edge is painted (like a
#                  filled polygon whose outline is rasterised too)
_NO_LEAF = -1


@dataclass(frozen=True)
class DeadLeavesConfig:
    resolution: int = 128  # px, square images; reference: 128 small scale, 256 large scale
    shapes: tuple[str, ...] = ("square",)  # leaf kinds, each leaf's kind uniform among them;
    #   reference "mixed" = all six SHAPE_KINDS; paper text "Shapes" = circle, triangle, rectangle
    radius_law: str = "power"  # "power": reference's truncated r^-sigma law on a grid;
    #   "exponential": paper text, density ~ exp(-exp_rate * r) truncated to [rmin, rmax]
    sigma: float = 3.0  # power-law exponent, reference hard-codes 3
    rmin: float = 0.03  # smallest radius, fraction of resolution (reference 0.03)
    rmax: float = 1.0  # largest radius, fraction of resolution (reference 1.0)
    radius_levels: int = 200  # grid size of the power law (reference 200 levels)
    exp_rate: float = 10.0  # exponential law rate, per unit of resolution (paper's lambda; the
    #   paper gives no value, 10 means a mean radius of about 0.1 * resolution before truncation)
    max_leaves: int = 5000  # cap on leaves per image (reference max_iters 5000)
    chunk_leaves: int = 256  # leaves rendered per chunk (speed/memory only; multiple of 256,
    #   never changes the images)

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if isinstance(self.shapes, str):  # "circle,triangle" from a command line
            object.__setattr__(self, "shapes", tuple(self.shapes.replace(" ", "").split(",")))
        check(isinstance(self.shapes, (tuple, list)),
              f"shapes must be a list of {', '.join(SHAPE_KINDS)}, got {self.shapes!r}")
        object.__setattr__(self, "shapes", tuple(self.shapes))
        check(len(self.shapes) > 0 and all(s in SHAPE_KINDS for s in self.shapes),
              f"shapes must be a non-empty list of {', '.join(SHAPE_KINDS)}, got {self.shapes!r}")
        check(self.radius_law in RADIUS_LAWS,
              f"radius_law must be one of {', '.join(RADIUS_LAWS)}, got {self.radius_law!r}")
        for name in ("sigma", "rmin", "rmax", "exp_rate"):
            value = getattr(self, name)
            check(isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and value > 0,
                  f"{name} must be a positive number, got {value!r}")
        check(self.rmin < self.rmax <= 4.0,
              f"need 0 < rmin < rmax <= 4, got rmin={self.rmin!r} rmax={self.rmax!r}")
        check(isinstance(self.radius_levels, int) and 2 <= self.radius_levels <= 100_000,
              f"radius_levels must be an integer in [2, 100000], got {self.radius_levels!r}")
        check(isinstance(self.max_leaves, int) and 1 <= self.max_leaves <= 1_000_000,
              f"max_leaves must be an integer in [1, 1000000], got {self.max_leaves!r}")
        check(isinstance(self.chunk_leaves, int) and self.chunk_leaves >= LEAF_BLOCK
              and self.chunk_leaves % LEAF_BLOCK == 0,
              f"chunk_leaves must be a positive multiple of {LEAF_BLOCK}, "
              f"got {self.chunk_leaves!r}")


_CONSTS: dict[tuple, torch.Tensor] = {}


def _const(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.tensor(values) on `device`, kept per device: on CUDA a fresh torch.tensor is a
    blocking host-to-device copy (the host waits for the GPU), and these were made per chunk."""
    if device.type == "cpu":
        return torch.tensor(values, dtype=dtype)
    key = (values, dtype, str(device))
    if key not in _CONSTS:
        _CONSTS[key] = torch.tensor(values, dtype=dtype, device=device)
    return _CONSTS[key]


def radius_grid(config: DeadLeavesConfig,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The power law's grid r_k (fractions of resolution) and its CDF, as in the reference."""
    r = torch.linspace(config.rmin, config.rmax, config.radius_levels, dtype=torch.float64,
                       device=device)
    w = r.pow(-config.sigma) - config.rmax ** -config.sigma
    cdf = torch.cumsum(w, 0) / w.sum()
    return r, cdf


def sample_radius(config: DeadLeavesConfig, u: torch.Tensor) -> torch.Tensor:
    """Radius (fraction of resolution, float64) for uniforms u, by the configured law."""
    if config.radius_law == "exponential":
        span = 1.0 - math.exp(-config.exp_rate * (config.rmax - config.rmin))
        return config.rmin - torch.log1p(-u.double() * span) / config.exp_rate
    r, cdf = radius_grid(config, u.device)
    u = u.double()
    # the grid level whose CDF value is nearest to u (ties to the lower level, like argmin)
    hi = torch.searchsorted(cdf, u).clamp_(1, cdf.numel() - 1)
    lo = hi - 1
    pick = torch.where((u - cdf[lo]).abs() <= (cdf[hi] - u).abs(), lo, hi)
    return r[pick]


def sample_leaf_block(config: DeadLeavesConfig, indices: torch.Tensor, seed: int,
                      block: int) -> dict[str, torch.Tensor]:
    """Parameters of leaves [256*block, 256*block + 256) of each image; every tensor (B, 256, ...).

    A fixed number of draws per leaf, from a stream keyed by (seed, image index, block), so
    image i's leaves never depend on the batch.
    """
    return leaf_params(config, leaf_uniforms(config, indices, seed, block))


def leaf_uniforms(config: DeadLeavesConfig, indices: torch.Tensor, seed: int, block: int,
                  checked: bool = False) -> torch.Tensor:
    """The uniforms (B, 256, K) of leaf block `block` of each image, K fixed per config.

    One draw of K uniforms per leaf (fewer, larger tensor ops). The first six columns are in
    every variant: the same seed gives the same sizes, centres and colours whatever the shapes.
    The others are drawn only when the config uses them (a fixed count per config).
    `checked`: the indices were already range-checked (no read-back of their min and max).
    """
    rng = ImageRandom(seed, indices, f"dead_leaves/leaves/{block}", _checked=checked)
    shapes = config.shapes
    has = {k: k in shapes for k in SHAPE_KINDS}
    n_angles = 4 if has["triangle"] or has["quadrilateral"] else 0
    extra = [len(shapes) > 1, has["oriented_square"], has["rectangle"]]
    return rng.uniform(LEAF_BLOCK, 6 + sum(extra) + n_angles)  # (B, n, K)


def leaf_params(config: DeadLeavesConfig, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """Leaf parameters (B, n, ...) from their uniforms (B, n, K) (elementwise per leaf)."""
    B, n = u.shape[:2]
    res, shapes, dev = config.resolution, config.shapes, u.device
    has = {k: k in shapes for k in SHAPE_KINDS}
    n_angles = 4 if has["triangle"] or has["quadrilateral"] else 0
    extra = [len(shapes) > 1, has["oriented_square"], has["rectangle"]]
    u_radius = u[..., 0]
    # int(U(0, res)) and int(U * 255) (levels 0..254) as the reference; the clamps catch float32
    # rounding of the largest uniforms up to res or 255
    centre = (u[..., 1:3] * res).floor().clamp_(max=res - 1).to(torch.int64)
    colour = (u[..., 3:6] * 255).floor().clamp_(max=254) / 255.0
    col = 6
    kind_ids = _const(tuple(SHAPE_KINDS.index(k) for k in shapes), torch.int64, dev)
    if extra[0]:  # each leaf's kind uniform among the configured kinds
        pick = (u[..., col] * len(shapes)).floor().long().clamp_(max=len(shapes) - 1)
        kind, col = kind_ids[pick], col + 1
    else:
        kind = kind_ids.expand(B, n)
    zeros = torch.zeros(B, n, device=dev)
    theta = aspect = zeros
    if extra[1]:  # oriented square rotation U(0, 2pi)
        theta, col = u[..., col] * (2 * math.pi), col + 1
    if extra[2]:  # rectangle: corners (+-r cos a, +-r sin a), a ~ U(0, pi/2)
        aspect, col = u[..., col] * (math.pi / 2), col + 1
    if n_angles:  # triangle / quadrilateral: sorted vertex angles U(0, 2pi)
        angles = (u[..., col:col + 4] * (2 * math.pi)).sort(dim=-1).values
    else:
        angles = zeros[..., None].expand(B, n, 4)
    radius = sample_radius(config, u_radius)
    radius_px = (radius * res).floor().clamp_(min=1).to(torch.int64)  # max(int(r * res), 1)
    return {"radius": radius.float(), "radius_px": radius_px, "cx": centre[..., 0],
            "cy": centre[..., 1], "colour": colour, "kind": kind, "theta": theta,
            "aspect": aspect, "angles": angles}


def leaf_geometry(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per leaf: box half-extents, circle radius, or polygon vertices (4, a triangle repeats one).

    Returns float32 tensors: 'vx', 'vy' (..., 4) polygon vertices (counter-clockwise in (x, y)),
    'hx', 'hy' box half-extents, 'rad' circle radius, and 'mode' 0 box, 1 circle, 2 polygon.
    """
    r = p["radius_px"].float()
    kind = p["kind"]
    cx, cy = p["cx"].float(), p["cy"].float()
    half = torch.floor(r * math.sqrt(2.0) / 2)  # square side r*sqrt(2), corners truncated to int
    rect_hx = torch.floor(r * torch.cos(p["aspect"]))
    rect_hy = torch.floor(r * torch.sin(p["aspect"]))
    is_rect = kind == SHAPE_KINDS.index("rectangle")
    hx = torch.where(is_rect, rect_hx, half)
    hy = torch.where(is_rect, rect_hy, half)
    # oriented square: the integer corners rotated by theta
    sx = _const((-1.0, 1.0, 1.0, -1.0), torch.float32, r.device)
    sy = _const((-1.0, -1.0, 1.0, 1.0), torch.float32, r.device)
    c, s = torch.cos(p["theta"])[..., None], torch.sin(p["theta"])[..., None]
    ox, oy = half[..., None] * sx, half[..., None] * sy
    sq_vx, sq_vy = ox * c - oy * s, ox * s + oy * c
    # triangle / quadrilateral: sorted angles on the circle; a triangle repeats its last vertex
    ang = p["angles"]
    tri = kind == SHAPE_KINDS.index("triangle")
    ang = torch.where(tri[..., None], torch.cat([ang[..., :3], ang[..., 2:3]], -1), ang)
    pg_vx, pg_vy = r[..., None] * torch.cos(ang), r[..., None] * torch.sin(ang)
    oriented = (kind == SHAPE_KINDS.index("oriented_square"))[..., None]
    vx = torch.where(oriented, sq_vx, pg_vx) + cx[..., None]
    vy = torch.where(oriented, sq_vy, pg_vy) + cy[..., None]
    mode = torch.full_like(kind, 2)
    mode = torch.where((kind == SHAPE_KINDS.index("square")) | is_rect, 0, mode)
    mode = torch.where(kind == SHAPE_KINDS.index("circle"), 1, mode)
    return {"vx": vx, "vy": vy, "hx": hx, "hy": hy, "rad": r, "mode": mode, "cx": cx, "cy": cy}


def _row_extent(g: dict[str, torch.Tensor], res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last canvas row (int64, clipped) touched by each leaf."""
    mode = g["mode"]
    half_h = torch.where(mode == 0, g["hy"], g["rad"])
    top = torch.where(mode == 2, torch.ceil(g["vy"].amin(-1) - _POLY_TOL), g["cy"] - half_h)
    bottom = torch.where(mode == 2, torch.floor(g["vy"].amax(-1) + _POLY_TOL), g["cy"] + half_h)
    return top.clamp(0, res - 1).long(), bottom.clamp(-1, res - 1).long()


def _row_spans(g: dict[str, torch.Tensor], leaf: torch.Tensor, y: torch.Tensor,
               res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive x-range [xl, xr] (int64, clipped) of flat leaf ids `leaf` on rows `y`."""
    # one gather of the per-leaf numbers every row needs: centre, box half-width or radius, mode
    size = torch.where(g["mode"] == 0, g["hx"], g["rad"])
    table = torch.stack([g["cx"], g["cy"], size, g["mode"].float()], -1).reshape(-1, 4)
    cx, cy, size, mode = table.index_select(0, leaf).unbind(-1)  # (R,) each
    dy = y.float() - cy
    # box: half-width; circle: pixel centres within distance r of the centre
    circle_hw = torch.floor(torch.sqrt((size * size - dy * dy).clamp_(min=0)))
    half_w = torch.where(mode == 1, circle_hw, size)
    xl = cx - half_w
    xr = cx + half_w
    is_poly = mode == 2
    if bool(is_poly.all()):  # oriented squares only: no subset to gather
        xl, xr = _polygon_row_spans(g, leaf, y, res)
        return xl.clamp(min=0).long(), xr.clamp(max=res - 1).long()
    poly_rows = torch.nonzero(is_poly).squeeze(1)
    if poly_rows.numel():
        lo, hi = _polygon_row_spans(g, leaf[poly_rows], y[poly_rows], res)
        xl[poly_rows] = lo
        xr[poly_rows] = hi
    return xl.clamp(min=0).long(), xr.clamp(max=res - 1).long()


def polygon_edge_bounds(g: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per polygon leaf, each edge's bound on x as a linear function of the row y: (..., 4, 4).

    A pixel centre (x, y) is painted when cross(edge, p - v) >= -tol * |edge| for every edge
    (vertices counter-clockwise in (x, y)), i.e. a * x + e_x * y + c >= 0 with a = -e_y. An edge
    with a > 0 gives a lower bound x >= k y + m, one with a < 0 an upper bound x <= k y + m. The
    columns are (k_lower, m_lower, k_upper, m_upper); an edge that gives no such bound holds
    (0, -inf) or (0, +inf). A horizontal edge (a = 0) bounds the rows only, which the leaf's row
    extent (vertex rows +- tol) already does for a convex polygon.
    """
    vx, vy = g["vx"], g["vy"]
    ex = vx.roll(-1, -1) - vx
    ey = vy.roll(-1, -1) - vy
    tol = _POLY_TOL * torch.sqrt(ex * ex + ey * ey)
    a = -ey
    c = ey * vx - ex * vy + tol
    safe = torch.where(a == 0, torch.ones_like(a), a)
    k, m = -ex / safe, -c / safe  # the bound x = k * y + m
    zero = torch.zeros_like(k)
    lower, upper = a > 0, a < 0
    return torch.stack([torch.where(lower, k, zero), torch.where(lower, m, -math.inf),
                        torch.where(upper, k, zero), torch.where(upper, m, math.inf)], -1)


def _polygon_row_spans(g: dict[str, torch.Tensor], leaf: torch.Tensor, y: torch.Tensor,
                       res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float x-range [ceil(lower), floor(upper)] of convex polygon leaves on rows y."""
    table = torch.cat([polygon_edge_bounds(g).flatten(-2), g["vx"].amin(-1, keepdim=True),
                       g["vx"].amax(-1, keepdim=True)], -1)
    rows = table.reshape(-1, 18).index_select(0, leaf)  # (R, 18)
    bounds = rows[:, :16].view(-1, 4, 4)  # (R, edge, [kl, ml, ku, mu])
    yf = y.float()[:, None]
    lower = (bounds[..., 0] * yf + bounds[..., 1]).amax(-1)
    upper = (bounds[..., 2] * yf + bounds[..., 3]).amin(-1)
    # the vertices' bounding box also bounds the span: a degenerate polygon (a radius-1
    # oriented square has all four corners at its centre) is then one pixel, not a full row
    lower = torch.maximum(lower, rows[:, 16] - _POLY_TOL)
    upper = torch.minimum(upper, rows[:, 17] + _POLY_TOL)
    return torch.ceil(lower.clamp(-1.0, res + 1.0)), torch.floor(upper.clamp(-2.0, res + 1.0))


def _spans_to_pairs(start: torch.Tensor, pos: torch.Tensor, total: int,
                    dtype: torch.dtype) -> torch.Tensor:
    """Expand spans to pairs: pair k of span r (which starts at pair `pos[r]`) gets
    start[r] + (k - pos[r]) if dtype is int64 (pixels), or start[r] if dtype is int32 (values).

    Built as a delta array and one cumsum (a few passes over the pairs, no index tensor of the
    pairs' size): ones (or zeros) everywhere, plus at each span start the jump from the previous
    span; empty spans share the next span's position and their jumps telescope.
    """
    step = 1 if dtype == torch.int64 else 0
    c = start - pos * step  # (R,) the value at pair k of span r is c[r] + step * k
    jump = torch.diff(c, prepend=c.new_full((1,), step))
    delta = torch.full((total + 1,), step, dtype=dtype, device=start.device)
    delta.scatter_add_(0, pos, jump.to(dtype))
    return delta[:total].cumsum_(0)


@dataclass
class LeafPixels:
    """The (pixel, leaf) pairs of a chunk of leaves of B images, kept by row spans.

    `pixel` is the flat index b * res * res + y * res + x (int64) of every covered pixel of every
    leaf, in leaf order; row span k belongs to flat leaf `row_leaf[k]` (b * L + j), starts at pair
    `pos[k]` and covers `width[k]` consecutive pairs.
    """

    pixel: torch.Tensor  # (P,) int64
    row_leaf: torch.Tensor  # (R,) int64
    width: torch.Tensor  # (R,) int64
    pos: torch.Tensor  # (R,) int64
    total: int  # P
    leaves: int  # B * L

    def expand(self, leaf_value: torch.Tensor) -> torch.Tensor:
        """A per-leaf int32 value (B, L) repeated onto every pair of the leaf: (P,) int32."""
        row_value = leaf_value.reshape(-1).index_select(0, self.row_leaf)
        return _spans_to_pairs(row_value, self.pos, self.total, torch.int32)


def leaf_pixel_pairs(params: dict[str, torch.Tensor], res: int) -> LeafPixels:
    """Rasterise leaves (B, L) into row spans and their (pixel, leaf) pairs."""
    g = leaf_geometry(params)
    B, L = params["kind"].shape
    dev = params["kind"].device
    top, bottom = _row_extent(g, res)
    nrows = (bottom - top + 1).clamp_(min=0).reshape(-1)  # (B*L,)
    n_rows = int(nrows.sum())
    leaf = torch.repeat_interleave(torch.arange(B * L, device=dev), nrows,
                                   output_size=n_rows)  # (R,) flat leaf ids
    y = _spans_to_pairs(top.reshape(-1), torch.cumsum(nrows, 0) - nrows, n_rows, torch.int64)
    xl, xr = _row_spans(g, leaf, y, res)
    width = (xr - xl + 1).clamp_(min=0)  # (R,)
    pos = torch.cumsum(width, 0) - width
    img = torch.div(leaf, L, rounding_mode="floor")
    total = int(pos[-1] + width[-1]) if n_rows else 0
    pixel = _spans_to_pairs(img * (res * res) + y * res + xl, pos, total, torch.int64)
    return LeafPixels(pixel, leaf, width, pos, total, B * L)


LeafSource = Callable[[torch.Tensor, int, int], dict[str, torch.Tensor]]


def render_leaf_ids(leaves_for: LeafSource, batch: int, res: int, max_leaves: int,
                    chunk: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Topmost visible leaf per pixel under "paint on top, stop at full coverage".

    `leaves_for(rows, start, stop)` returns the parameters (len(rows), stop - start) of leaves
    [start, stop) of the images `rows` (positions in the batch). Returns the leaf id map
    (B, res, res) int32 (-1 where no leaf covers the pixel) and N per image (int64: the leaf index
    at which the canvas became fully covered, -1 if the cap was reached first).
    """
    hw = res * res
    last = torch.full((batch, hw), _NO_LEAF, dtype=torch.int32, device=device)
    done_at = torch.full((batch,), -1, dtype=torch.int64, device=device)
    active = torch.arange(batch, device=device)
    for start in range(0, max_leaves, chunk):
        stop = min(start + chunk, max_leaves)
        n_active = active.numel()
        pairs = leaf_pixel_pairs(leaves_for(active, start, stop), res)
        leaf_id = torch.arange(start, stop, dtype=torch.int32, device=device).expand(
            n_active, -1)  # (A, L) global leaf index
        value = pairs.expand(leaf_id)  # (P,)
        old = (last if n_active == batch else last[active]).reshape(-1)  # (A * hw,)
        new = old.scatter_reduce(0, pairs.pixel, value, "amax").view(-1, hw)
        full = (new >= 0).all(1)  # (A,)
        if bool(full.any()):
            n_cover, repainted = _finish(pairs, value, old, full, hw)
            new[full] = repainted
            done_at[active[full]] = n_cover
        if n_active == batch:
            last = new
        else:
            last[active] = new
        active = active[~full]
        if active.numel() == 0:
            break
    return last.view(batch, res, res), done_at


def _finish(pairs: LeafPixels, value: torch.Tensor, old: torch.Tensor, full: torch.Tensor,
            hw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For the images `full` (A,) whose canvas got covered within this chunk: N (the leaf at which
    the last uncovered pixel got covered: the largest first leaf over the pixels uncovered before
    the chunk) and their leaf id maps repainted with leaves <= N only. Only their pairs are
    touched (pairs are image-major, so each image's pairs are one contiguous range)."""
    n_img = full.numel()
    per_leaf = torch.zeros(pairs.leaves, dtype=torch.int64, device=old.device)
    per_leaf.index_add_(0, pairs.row_leaf, pairs.width)
    per_img = per_leaf.view(n_img, -1).sum(1)  # (A,) pairs per image
    offset = torch.cumsum(per_img, 0) - per_img
    rows = torch.nonzero(full).squeeze(1)  # (F,)
    count = per_img[rows]
    n_sel = int(count.sum())
    sel = torch.repeat_interleave(offset[rows] - (torch.cumsum(count, 0) - count), count,
                                  output_size=n_sel) + torch.arange(n_sel, device=old.device)
    pixel, val = pairs.pixel[sel], value[sel]
    first = torch.full_like(old, torch.iinfo(torch.int32).max)
    first.scatter_reduce_(0, pixel, val, "amin")
    first = torch.where(old < 0, first, _NO_LEAF).view(-1, hw)
    n_cov = first[rows].amax(1)  # (F,) int32
    limit = torch.repeat_interleave(n_cov, count, output_size=n_sel)
    repaint = old.scatter_reduce(0, pixel, torch.where(val <= limit, val, _NO_LEAF), "amax")
    return n_cov.long(), repaint.view(-1, hw)[rows]


class DeadLeaves(Generator):
    """Dead-leaves images: leaves painted on top until the canvas is covered (section 2)."""

    config_cls = DeadLeavesConfig

    def default_batch_size(self, device: torch.device) -> int:
        # Pairs per chunk ~ batch * 256 leaves * ~200 px at 128 px (x4 per doubling of the
        # resolution): CPU 32 images keep a chunk's tensors near 100 MB and the working set
        # cache-friendly; CUDA 512 images need about 0.7 GB per chunk (not measured on a GPU).
        scale = max(1, round((self.config.resolution / 128) ** 2))
        return max(1, (512 if device.type == "cuda" else 32) // scale)

    def sample_leaves(self, indices: torch.Tensor, seed: int, start: int = 0,
                      stop: int | None = None) -> dict[str, torch.Tensor]:
        """Parameters of leaves [start, stop) of the images `indices`: tensors (B, stop - start)."""
        stop = self.config.max_leaves if stop is None else stop
        check(0 <= start < stop, f"need 0 <= start < stop, got start={start} stop={stop}")
        blocks = [sample_leaf_block(self.config, indices, seed, b)
                  for b in range(start // LEAF_BLOCK, (stop - 1) // LEAF_BLOCK + 1)]
        lo = start - (start // LEAF_BLOCK) * LEAF_BLOCK
        return {k: torch.cat([blk[k] for blk in blocks], 1)[:, lo:lo + stop - start]
                for k in blocks[0]}

    def leaf_ids(self, indices: torch.Tensor, seed: int,
                 colours: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W) topmost leaf index per pixel (-1 uncovered) and, per image, the index N of
        the leaf that completed the coverage (-1 if the cap came first).

        When `colours` (B, max_leaves, 3) is given, the colours of the drawn leaves are stored in
        it (render uses them instead of drawing them twice).
        """
        cfg = self.config

        def leaves_for(rows: torch.Tensor, start: int, stop: int) -> dict[str, torch.Tensor]:
            params = self.sample_leaves(indices[rows], seed, start, stop)
            if colours is not None:
                colours[rows, start:stop] = params["colour"]
            return params

        if self._fused(indices.device):  # CUDA: one Triton rasteriser per chunk, same ids
            from noisevision.generators import dead_leaves_triton as dlt

            indices = as_index_tensor(indices, indices.device)  # checked once, not per block

            tables = self._chunk_tables()

            def chunk_table(start: int, stop: int) -> torch.Tensor:
                # every image of the batch: the uniforms of the chunk's 256-leaf blocks, then
                # the per-leaf arithmetic once for all of them (elementwise: the same values as
                # block by block, position-independent on CUDA; one CUDA graph there)
                lo = start % LEAF_BLOCK
                u = torch.cat([leaf_uniforms(cfg, indices, seed, b, checked=True)
                               for b in range(start // LEAF_BLOCK, (stop - 1) // LEAF_BLOCK + 1)],
                              1)
                table, colour = tables(u)
                if colours is not None:
                    colours[:, start:stop] = colour[:, lo:lo + stop - start]
                return table if lo == 0 else table[:, lo:].contiguous()

            return dlt.render_leaf_ids_fused(chunk_table, indices.numel(), cfg.resolution,
                                             cfg.max_leaves,
                                             max(cfg.chunk_leaves, dlt.FUSED_CHUNK),
                                             indices.device)
        return render_leaf_ids(leaves_for, indices.numel(), cfg.resolution, cfg.max_leaves,
                               cfg.chunk_leaves, indices.device)

    def _chunk_tables(self):
        """u (B, L, K) -> (leaf_table (B, L, NF), colours (B, L, 3)), as a CUDA graph on CUDA."""
        if getattr(self, "_tables", None) is None:
            from noisevision.generators import dead_leaves_triton as dlt

            cfg = self.config

            def tables(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                params = leaf_params(cfg, u)
                return dlt.leaf_table(leaf_geometry(params), cfg.resolution), params["colour"]

            self._tables = dlt.GraphedFunction(tables)
        return self._tables

    def _fused(self, device: torch.device) -> bool:
        """Whether leaf_ids runs the fused Triton rasteriser (dead_leaves_triton): on CUDA with
        triton, unless NOISEVISION_TRITON=0. Tests force it on CPU under the interpreter."""
        if device.type != "cuda":
            return False
        from noisevision.generators import dead_leaves_triton as dlt

        return dlt.available(device)

    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        B, res = indices.numel(), self.config.resolution
        colours = torch.zeros(B, self.config.max_leaves + 1, 3, device=indices.device)
        ids, _ = self.leaf_ids(indices, seed, colours)
        # uncovered pixels (-1) read the last row, which stays black
        flat = torch.where(ids < 0, self.config.max_leaves, ids).view(B, -1, 1).long()
        out = colours.gather(1, flat.expand(-1, -1, 3))  # (B, H*W, 3)
        return out.view(B, res, res, 3).permute(0, 3, 1, 2).contiguous()


register_generator("dead_leaves_squares", DeadLeaves,
                   "dead leaves, axis-aligned squares (paper: Dead leaves - Squares)",
                   shapes=("square",))
register_generator("dead_leaves_oriented", DeadLeaves,
                   "dead leaves, squares rotated by U(0, 2pi) (paper: Dead leaves - Oriented)",
                   shapes=("oriented_square",))
register_generator("dead_leaves_shapes", DeadLeaves,
                   "dead leaves, six shape kinds as the reference code "
                   "(paper: Dead leaves - Shapes)",
                   shapes=SHAPE_KINDS)
