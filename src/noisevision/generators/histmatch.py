"""Batched histogram matching with piecewise-linear CDF maps (the matlabPyrTools `histoMatch` idea).

Each row of a (G, n) tensor (one image channel, or one pyramid band of one channel) is matched on
its own to a target histogram given on equally spaced bins; no statistic is shared between rows, so
a row's result does not depend on the other rows of the batch. The algorithm, as described for the
MATLAB original (reference study sec. 4.1):

1. histogram the source row with as many equal bins as the target, between its min and max;
2. build the source CDF at its bin edges and the target CDF at the target's bin edges (target
   counts get + mean / 1e8 so that the target CDF has no flat steps);
3. map every source edge to the target value of equal CDF (linear interpolation of the target
   CDF), giving a lookup table on the source edges;
4. apply the table to every source value by linear interpolation (matlabPyrTools `pointOp`).

Cost is linear in the number of values (a bincount, no sort), which keeps the 10-iteration
statistical models fast. CDF arithmetic is done in float64 on the small (G, bins) tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from noisevision.device import triton_available, triton_wanted


@dataclass
class TargetHistogram:
    """Target histograms of G rows on equal bins: bin k covers [lo + k step, lo + (k+1) step).

    counts: (G, bins) non-negative weights; lo, step: (G,) float64 edges."""

    counts: torch.Tensor
    lo: torch.Tensor
    step: torch.Tensor

    def cdf_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(edges, cdf), each (G, bins + 1) float64: the target CDF at its bin edges."""
        counts = self.counts.double()
        counts = counts + counts.mean(dim=1, keepdim=True) * 1e-8  # no flat CDF steps
        cdf = torch.cumsum(counts, dim=1)
        cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=1) / cdf[:, -1:]
        k = torch.arange(counts.shape[1] + 1, device=counts.device, dtype=torch.float64)
        edges = self.lo.double()[:, None] + self.step.double()[:, None] * k
        return edges, cdf


def _bin_positions(x: torch.Tensor, bins: int):
    """Per row of x (G, n): lo, step (G,), fractional positions within the bins (G, n) and flat
    int32 bin indices row * (bins + 1) + bin (G, n) (rows padded by one bin for lookup tables).

    (amin/amax, int32 indices and index_select are used because they are several times faster
    on CPU than aminmax, int64 and take/gather.)"""
    rows = x.shape[0]
    if rows * (bins + 1) >= 2**31:
        raise ValueError(f"too many histogram rows for one call ({rows} x {bins} bins)")
    lo = x.amin(dim=1)
    step = ((x.amax(dim=1) - lo) / bins).clamp_min(torch.finfo(x.dtype).tiny)
    inv = (1.0 / step)[:, None]
    pos = torch.addcmul((-lo)[:, None] * inv, x, inv)  # (x - lo) / step
    cell = pos.floor().clamp_(0, bins - 1)
    frac = pos.sub_(cell)  # in [0, 1] (up to 1 + rounding in the last bin)
    flat = cell.int()
    flat += torch.arange(rows, device=x.device, dtype=torch.int32)[:, None] * (bins + 1)
    return lo, step, frac, flat


def _row_bincount(flat: torch.Tensor, rows: int, bins: int) -> torch.Tensor:
    """Counts (G, bins) of flat bin indices from `_bin_positions` (exact integer counts)."""
    counts = torch.bincount(flat.reshape(-1), minlength=rows * (bins + 1))
    return counts.view(rows, bins + 1)[:, :bins]


def equal_bin_histogram(x: torch.Tensor, bins: int) -> TargetHistogram:
    """Histograms of the rows of x (G, n) on `bins` equal bins between each row's min and max."""
    lo, step, _, flat = _bin_positions(x, bins)
    return TargetHistogram(_row_bincount(flat, x.shape[0], bins), lo.double(), step.double())


def _inverse_cdf(edges: torch.Tensor, cdf: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Values where the piecewise-linear CDF (edges, cdf) reaches q; all (G, .) float64."""
    j = torch.searchsorted(cdf, q.contiguous(), right=True) - 1
    j = j.clamp_(0, cdf.shape[1] - 2)
    c0, c1 = cdf.gather(1, j), cdf.gather(1, j + 1)
    e0, e1 = edges.gather(1, j), edges.gather(1, j + 1)
    t = (q - c0) / (c1 - c0).clamp_min(1e-300)
    return e0 + t * (e1 - e0)


FORCE_TRITON = False  # tests: the Triton path on CPU tensors (under TRITON_INTERPRET=1)


def _use_triton(x: torch.Tensor, bins: int) -> bool:
    """The Triton kernels for x: on CUDA (unless NOISEVISION_TRITON=0) in float32, up to
    histmatch_triton.MAX_BINS bins."""
    if x.dtype != torch.float32 or not (FORCE_TRITON or triton_wanted(x.device)):
        return False
    from noisevision.generators import histmatch_triton as ht

    return (ht.triton is not None and bins <= ht.MAX_BINS
            and (FORCE_TRITON or triton_available(x.device)))


def _tables(counts: torch.Tensor, n: int, t_edges: torch.Tensor, t_cdf: torch.Tensor,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The lookup table (target value at each source bin edge) and its slopes, (G, bins + 1)."""
    s_cdf = torch.cumsum(counts.double(), dim=1) / n
    s_cdf = torch.cat([torch.zeros_like(s_cdf[:, :1]), s_cdf], dim=1)  # (G, bins + 1)
    lut = _inverse_cdf(t_edges, t_cdf, s_cdf).to(dtype)  # target value at each source edge
    slope = torch.cat([lut[:, 1:] - lut[:, :-1], torch.zeros_like(lut[:, :1])], dim=1)
    return lut, slope


def match_histograms(x: torch.Tensor, target: TargetHistogram,
                     target_table: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Histogram-match every row of x (G, n) to the matching row of `target`; returns x's dtype.

    `target_table` (from `target.cdf_table()`) may be passed to reuse it across iterations.
    """
    g, n = x.shape
    bins = target.counts.shape[1]
    t_edges, t_cdf = target_table if target_table is not None else target.cdf_table()
    if _use_triton(x, bins):  # CUDA: the per-value passes as two kernels (histmatch_triton)
        from noisevision.generators import histmatch_triton as ht

        x = x.contiguous()
        _, _, a, inv = ht.bin_affine(x, bins)
        counts = ht.row_histograms(x, a, inv, bins)
        lut, slope = _tables(counts, n, t_edges, t_cdf, x.dtype)
        return ht.apply_tables(x, a, inv, lut, slope)
    _, _, frac, flat = _bin_positions(x, bins)
    lut, slope = _tables(_row_bincount(flat, g, bins), n, t_edges, t_cdf, x.dtype)
    index = flat.reshape(-1)
    low = lut.reshape(-1).index_select(0, index).view(g, n)  # value at the bin's lower edge
    return low.addcmul_(slope.reshape(-1).index_select(0, index).view(g, n), frac)
