"""Compile every Triton kernel of the package for a Hopper GPU (sm_90) on a machine without one.

    python benchmarks/triton_compile_check.py

The Triton interpreter (the CPU tests) does not specialize arguments the way the compiler does:
integer arguments equal to 1 (and, in some versions, 0) become compile-time constants, which
breaks code that treats them as tensors. This script compiles each kernel with its scalar
arguments as int32 values and as the constants 0 and 1, so such errors show up before a GPU is
lent. It needs only triton (and its bundled ptxas); prints one line per variant.
"""

from __future__ import annotations

import itertools
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from noisevision import rng_triton
from noisevision.generators import dead_leaves_triton, histmatch_triton

try:  # the stylegan package layout, else the earlier flat module
    from noisevision.generators.stylegan.paths import triton as stylegan_triton
except ImportError:
    from noisevision.generators import stylegan_triton

TARGET = GPUTarget("cuda", 90, 32)


def compile_variants(name, fn, pointers, scalars, consts, options=None) -> int:
    failed = 0
    for values in itertools.product(("i32", 0, 1), repeat=len(scalars)):
        sig = {p: t for p, t in pointers.items()}
        constexprs = dict(consts)
        for arg, v in zip(scalars, values, strict=True):
            if v == "i32":
                sig[arg] = "i32"
            else:
                sig[arg] = "constexpr"
                constexprs[arg] = v
        for k in consts:
            sig[k] = "constexpr"
        try:
            triton.compile(ASTSource(fn, sig, constexprs), target=TARGET,
                           options=options or {"num_warps": 4})
            ok = "ok  "
        except Exception as e:  # noqa: BLE001 - report every failing variant
            ok = f"FAIL {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            failed += 1
        print(f"{ok} {name} {dict(zip(scalars, values, strict=True))}")
    return failed


def main() -> int:
    failed = compile_variants(
        "rng bits", rng_triton._bits_kernel,
        {"ka_ptr": "*i64", "kb_ptr": "*i64", "out_ptr": "*i64"},
        ["start_hi", "start_lo", "n"], {"BLOCK": 1024})
    failed += compile_variants(
        "rng keys", rng_triton._keys_kernel,
        {"idx_ptr": "*i64", "ka_ptr": "*i64", "kb_ptr": "*i64"},
        ["w0h", "w0l", "w1h", "w1l", "n"], {"w2h": 5, "w2l": 7, "BLOCK": 1024})
    ptrs = {k: "*fp32" for k in ("u_ptr", "noise_ptr", "alpha_ptr", "beta_ptr", "rows_ptr",
                                 "out_ptr")}
    for r, hi, lo in ((12, 8, 4), (9, 8, 1), (3, 2, 1)):
        for has_noise, has_beta in ((True, True), (True, False), (False, True)):
            failed += compile_variants(
                f"fused R={r} noise={has_noise} beta={has_beta}",
                stylegan_triton._fused_relu_sums_kernel, ptrs, ["C", "P"],
                {"R": r, "R_HI": hi, "R_LO": lo, "HAS_NOISE": has_noise, "HAS_BETA": has_beta,
                 "BLOCK_P": 1024}, {"num_warps": 4})
    for write_first in (True, False):
        failed += compile_variants(
            f"dead leaves raster write_first={write_first}", dead_leaves_triton._raster_kernel,
            {"tab_ptr": "*fp32", "old_ptr": "*i32", "new_ptr": "*i32", "first_ptr": "*i32",
             "flag_ptr": "*i32", "limit_ptr": "*i32"}, ["stride", "n_leaves", "first_leaf", "res"],
            {"ROWS": 8, "BLOCK_X": 128, "NFIELDS": dead_leaves_triton.NF,
             "WRITE_FIRST": write_first}, {"num_warps": 4, "enable_fp_fusion": False})
    hm_opts = {"num_warps": 4, "enable_fp_fusion": False}
    for nb in (512, 1024):
        failed += compile_variants(
            f"histmatch row histograms NB={nb}", histmatch_triton._row_hist_kernel,
            {"x_ptr": "*fp32", "a_ptr": "*fp32", "inv_ptr": "*fp32", "counts_ptr": "*i32"},
            ["n", "bins"], {"BLOCK": 1024, "NB": nb, "EMULATE": False}, hm_opts)
    failed += compile_variants(
        "histmatch apply", histmatch_triton._apply_kernel,
        {"x_ptr": "*fp32", "out_ptr": "*fp32", "a_ptr": "*fp32", "inv_ptr": "*fp32",
         "lut_ptr": "*fp32", "slope_ptr": "*fp32"}, ["n", "bins"],
        {"BLOCK": 1024, "EMULATE": False}, hm_opts)
    print(f"{failed} variants failed" if failed else "all kernels compile for sm_90")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
