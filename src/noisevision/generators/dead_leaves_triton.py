"""Dead leaves on CUDA as one fused Triton rasteriser per chunk of leaves (issue 17).

The torch renderer (dead_leaves.render_leaf_ids) turns every leaf into row spans, the spans into
(pixel, leaf) pairs and keeps the topmost leaf per pixel with scatter_reduce: sizes that depend on
the data, so it reads counts back to the host several times per chunk and makes about 4,000 small
kernel launches per batch of 512 at 128 px. On an H200 the launches took 101 ms per batch against
22 ms of GPU work (BENCHMARKS.md).

Here each chunk of leaves is one table of per-leaf numbers (B, L, NF) computed by the same torch
code as the torch renderer (leaf_geometry, _row_extent, polygon_edge_bounds: the same floats on
the same device), and one kernel program per (image, band of rows) walks the chunk's leaves in
order and, for each leaf whose rows meet the band, computes its x-range on each row exactly as
`_row_spans` does (box half-width, circle floor(sqrt(r^2 - dy^2)), polygon edge bounds) and
keeps, per pixel, the last (topmost) and the first leaf covering it. Every value is an integer
held in float32 or the same sequence of float32 operations as the torch code, each rounded once
(no fused multiply-add: the kernels are compiled with enable_fp_fusion=False; square roots are
correctly rounded, as torch's), so the leaf id maps are the torch renderer's bit for bit: tested
under the Triton interpreter on CPU against the CPU renderer, and on a GPU by
`benchmarks/gpu_check.py` (NOISEVISION_TRITON=0 gives the torch renderer there).

Per chunk: sample the leaves of every image of the batch (fixed shapes: images already covered
are skipped inside the kernel, not by gathering a subset), one kernel for the new leaf map and
each pixel's first covering leaf, a few fixed-shape reductions for the images whose canvas the
chunk completes (N = the largest first leaf over the pixels uncovered before the chunk), one
kernel repainting those images with the leaves <= N, and one read-back (whether any image is
still uncovered) to stop.
"""

from __future__ import annotations

import os
import warnings

import torch

try:
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - no triton: the torch renderer is used
    triton = None

from noisevision.device import triton_available

NF = 24  # numbers per leaf in the table
(F_MODE, F_TOP, F_BOTTOM, F_CX, F_CY, F_SIZE) = range(6)
F_BOUNDS = 6  # 16 numbers: per edge (k_lower, m_lower, k_upper, m_upper)
F_XMIN, F_XMAX = 22, 23  # the vertices' x-range minus / plus the polygon tolerance
FUSED_CHUNK = 1024  # leaves per chunk on this path (fewer launches and read-backs than 256)
_BIG = 2**31 - 1


def available(device: torch.device) -> bool:
    """Whether the fused rasteriser runs on `device`: noisevision.device.triton_available (CUDA
    unless NOISEVISION_TRITON=0, or CPU under TRITON_INTERPRET=1 for tests)."""
    return triton is not None and triton_available(device)


if triton is not None:

    # n_leaves and first_leaf change from chunk to chunk (the last chunk is shorter): not
    # specialised, so one compiled kernel serves every chunk (a recompile costs about a second)
    @triton.jit(do_not_specialize=["n_leaves", "first_leaf"])
    def _raster_kernel(tab_ptr, stride, n_leaves, first_leaf, old_ptr, new_ptr, first_ptr,
                       flag_ptr, limit_ptr, res, ROWS: tl.constexpr, BLOCK_X: tl.constexpr,
                       NFIELDS: tl.constexpr, WRITE_FIRST: tl.constexpr):
        b = tl.program_id(0)
        if tl.load(flag_ptr + b) != 0:
            r0 = tl.program_id(1) * ROWS
            rows = r0 + tl.arange(0, ROWS)
            xs = tl.arange(0, BLOCK_X)
            yf = rows.to(tl.float32)
            xf = xs.to(tl.float32)
            inside = (rows[:, None] < res) & (xs[None, :] < res)
            pix = b.to(tl.int64) * res * res + rows[:, None] * res + xs[None, :]
            last = tl.load(old_ptr + pix, mask=inside, other=-1)
            first = tl.full((ROWS, BLOCK_X), 2147483647, tl.int32)
            limit = tl.load(limit_ptr + b)
            base = tab_ptr + b.to(tl.int64) * stride * NFIELDS
            for j in range(0, n_leaves):
                leaf = base + j * NFIELDS
                top = tl.load(leaf + 1)
                bottom = tl.load(leaf + 2)
                k = first_leaf + j
                if (top <= r0 + ROWS - 1) & (bottom >= r0) & (k <= limit):
                    mode = tl.load(leaf + 0)
                    cx = tl.load(leaf + 3)
                    size = tl.load(leaf + 5)
                    if mode == 2.0:  # polygon: the edges' bounds on x at row y
                        lower = tl.load(leaf + 6) * yf + tl.load(leaf + 7)
                        upper = tl.load(leaf + 8) * yf + tl.load(leaf + 9)
                        lower = tl.maximum(lower, tl.load(leaf + 10) * yf + tl.load(leaf + 11))
                        upper = tl.minimum(upper, tl.load(leaf + 12) * yf + tl.load(leaf + 13))
                        lower = tl.maximum(lower, tl.load(leaf + 14) * yf + tl.load(leaf + 15))
                        upper = tl.minimum(upper, tl.load(leaf + 16) * yf + tl.load(leaf + 17))
                        lower = tl.maximum(lower, tl.load(leaf + 18) * yf + tl.load(leaf + 19))
                        upper = tl.minimum(upper, tl.load(leaf + 20) * yf + tl.load(leaf + 21))
                        lower = tl.maximum(lower, tl.load(leaf + 22))
                        upper = tl.minimum(upper, tl.load(leaf + 23))
                        resf = res + 0.0
                        xl = tl.ceil(tl.minimum(tl.maximum(lower, -1.0), resf + 1.0))
                        xr = tl.floor(tl.minimum(tl.maximum(upper, -2.0), resf + 1.0))
                    elif mode == 1.0:  # circle: pixel centres within the radius
                        dy = yf - tl.load(leaf + 4)
                        hw = tl.floor(tl.sqrt_rn(tl.maximum(size * size - dy * dy, 0.0)))
                        xl = cx - hw
                        xr = cx + hw
                    else:  # box: its integer half-width on every row
                        xl = yf * 0.0 + (cx - size)
                        xr = yf * 0.0 + (cx + size)
                    in_rows = (rows >= top) & (rows <= bottom)
                    hit = (in_rows[:, None] & (xf[None, :] >= xl[:, None])
                           & (xf[None, :] <= xr[:, None]))
                    last = tl.where(hit, k, last)
                    if WRITE_FIRST:
                        first = tl.where(hit & (first == 2147483647), k, first)
            tl.store(new_ptr + pix, last, mask=inside)
            if WRITE_FIRST:
                tl.store(first_ptr + pix, first, mask=inside)


def leaf_table(g: dict[str, torch.Tensor], res: int) -> torch.Tensor:
    """(B, L, NF) float32: per leaf the numbers the kernel needs, computed as `_row_spans` does."""
    from noisevision.generators.dead_leaves import _POLY_TOL, _row_extent, polygon_edge_bounds

    top, bottom = _row_extent(g, res)
    size = torch.where(g["mode"] == 0, g["hx"], g["rad"])
    bounds = polygon_edge_bounds(g).flatten(-2)  # (B, L, 16)
    return torch.cat([torch.stack([g["mode"].float(), top.float(), bottom.float(), g["cx"],
                                   g["cy"], size], -1), bounds,
                      (g["vx"].amin(-1) - _POLY_TOL)[..., None],
                      (g["vx"].amax(-1) + _POLY_TOL)[..., None]], -1).contiguous()


def _launch(table, n_leaves, start, old, new, first, flag, limit, res, write_first):
    batch, stride = table.shape[:2]
    block_x = triton.next_power_of_2(res)
    rows = max(1, min(triton.next_power_of_2(res), 1024 // block_x))
    grid = (batch, triton.cdiv(res, rows))
    kwargs = {} if table.device.type == "cpu" else {"enable_fp_fusion": False}
    _raster_kernel[grid](table, stride, n_leaves, start, old, new, first, flag, limit, res,
                         ROWS=rows,
                         BLOCK_X=block_x, NFIELDS=NF, WRITE_FIRST=write_first, num_warps=4,
                         **kwargs)


def render_leaf_ids_fused(chunk_table, batch: int, res: int, max_leaves: int, chunk: int,
                          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """dead_leaves.render_leaf_ids with the fused rasteriser: the same (ids, N) bit for bit.

    `chunk_table(start, stop)` returns the `leaf_table` (B, L, NF) of leaves [start, stop) of
    every image of the batch, contiguous, L >= stop - start (rows past stop - start unused).
    """
    from noisevision.generators.dead_leaves import _NO_LEAF

    hw = res * res
    last = torch.full((batch, hw), _NO_LEAF, dtype=torch.int32, device=device)
    new = torch.empty_like(last)
    first = torch.empty_like(last)
    repaint = torch.empty_like(last)
    done_at = torch.full((batch,), -1, dtype=torch.int64, device=device)
    active = torch.ones(batch, dtype=torch.int32, device=device)
    no_limit = torch.full((batch,), _BIG, dtype=torch.int32, device=device)
    for start in range(0, max_leaves, chunk):
        stop = min(start + chunk, max_leaves)
        table = chunk_table(start, stop)
        n = stop - start
        _launch(table, n, start, last, new, first, active, no_limit, res, True)
        act = active.bool()
        new = torch.where(act[:, None], new, last)
        full = act & (new >= 0).all(1)
        # N per image completed in this chunk: the largest first leaf over the pixels that were
        # uncovered before it (all of them are covered in the chunk)
        n_cov = torch.where(last < 0, first, _NO_LEAF).amax(1)
        limit = torch.where(full, n_cov, -1).to(torch.int32)
        _launch(table, n, start, last, repaint, first, full.to(torch.int32), limit, res, False)
        last, new = torch.where(full[:, None], repaint, new), last
        done_at = torch.where(full, n_cov.long(), done_at)
        active = (act & ~full).to(torch.int32)
        if not bool(active.any()):
            break
    return last.view(batch, res, res), done_at


class GraphedFunction:
    """fn(u) -> tuple of tensors, replayed as a CUDA graph per input shape (CUDA only).

    The chunk's per-leaf arithmetic (leaf_params, leaf_geometry, leaf_table: about 170 small
    kernels on a (B, 1024, K) tensor of uniforms) is captured once and replayed with one launch:
    the same kernels on the same shapes, so the same numbers as run eagerly. The outputs are
    static tensors, overwritten by the next replay (the caller uses them before that, in stream
    order). NOISEVISION_CUDA_GRAPHS=0, or a capture that fails, runs fn eagerly.
    """

    def __init__(self, fn) -> None:
        self.fn = fn
        self.graphs: dict = {}

    def __call__(self, u: torch.Tensor):
        if u.device.type != "cuda" or os.environ.get("NOISEVISION_CUDA_GRAPHS", "1") == "0":
            return self.fn(u)
        key = (tuple(u.shape), u.dtype, str(u.device))
        if key not in self.graphs:
            self.graphs[key] = self._capture(u)
        entry = self.graphs[key]
        if entry is None:
            return self.fn(u)
        graph, static_u, out = entry
        static_u.copy_(u)
        graph.replay()
        return out

    def _capture(self, u: torch.Tensor):
        try:
            static_u = u.clone()
            side = torch.cuda.Stream(device=u.device)
            side.wait_stream(torch.cuda.current_stream(u.device))
            with torch.cuda.stream(side):  # warm-up: lazy initialisations happen outside
                for _ in range(2):
                    self.fn(static_u)
            torch.cuda.current_stream(u.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: another thread (a training loop beside a prefetching producer) may
            # use CUDA while this one captures
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                out = self.fn(static_u)
            return graph, static_u, out
        except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: run eagerly
            warnings.warn(f"dead leaves: CUDA graph capture failed, running eagerly ({exc})",
                          stacklevel=2)
            return None
