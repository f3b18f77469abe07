"""Counter-based random numbers: every draw is a pure function of (seed, stream, index, counter).

Generators never use torch's global RNG or stateful generators for image content. Each image
index owns two 32-bit keys derived from (root seed, stream name, index); the k-th number it draws
is a hash of (keys, k). The hash is integer arithmetic on int64 tensors that never overflows (all
values stay below 2**63), so the same bits come out on CPU and on any GPU, and an image's draws do
not depend on which other images share its batch, the batch size, or the order of generation.

The mixer is Chris Wellons' "lowbias32" integer hash (a public-domain avalanche function),
applied twice per draw.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from noisevision.device import triton_wanted

MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B9
_TWO_PI = 2.0 * math.pi
MAX_INDEX = 2**40  # indices are split into two 20-bit halves folded into the keys


# lowbias32 (Chris Wellons): three xor-shifts and two multiplications modulo 2**32. The one
# definition of the hash's constants; every implementation below (and the Triton kernels of
# rng_triton, which import them) runs these steps.
LOWBIAS32_SHIFTS = (16, 15, 16)
LOWBIAS32_MULS = (0x7FEB352D, 0x846CA68B)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 x in [0, 2**32) without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def mix32(x):
    """lowbias32 avalanche hash: int64 tensors with values in [0, 2**32) (any device, no
    overflow), uint32 numpy arrays (products wrap modulo 2**32 natively) or Python ints."""
    (s1, s2, s3), (m1, m2) = LOWBIAS32_SHIFTS, LOWBIAS32_MULS
    if isinstance(x, torch.Tensor):
        x = x ^ (x >> s1)
        x = _mul32(x, m1)
        x = x ^ (x >> s2)
        x = _mul32(x, m2)
        return x ^ (x >> s3)
    if isinstance(x, np.ndarray):
        x = x ^ (x >> np.uint32(s1))
        x = x * np.uint32(m1)
        x = x ^ (x >> np.uint32(s2))
        x = x * np.uint32(m2)
        return x ^ (x >> np.uint32(s3))
    x &= MASK32
    x ^= x >> s1
    x = (x * m1) & MASK32
    x ^= x >> s2
    x = (x * m2) & MASK32
    return x ^ (x >> s3)


def _mix32_int(x: int) -> int:
    """The hash on a Python int (seeds and stream names)."""
    return mix32(int(x))


def seed_words(seed: int, stream: str) -> tuple[int, int, int]:
    """Three 32-bit words from a root seed (any non-negative int < 2**64) and a stream name."""
    if not isinstance(seed, int) or seed < 0 or seed >= 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    salt = zlib.crc32(stream.encode())
    w0 = _mix32_int(_mix32_int(seed & MASK32) ^ salt)
    w1 = _mix32_int(_mix32_int((seed >> 32) ^ w0) + 0x68E31DA4)
    w2 = _mix32_int(w1 ^ 0xB5297A4D ^ salt)
    return w0, w1, w2


def sample_seed(seed: int, stream: str, index: int) -> int:
    """A 63-bit seed for sample `index` of `stream`, a pure function of (seed, stream, index).

    For third-party code that draws from torch's global RNG (torchvision's random transforms):
    seeding it per sample makes the draws independent of loader workers, batch and order."""
    if not isinstance(index, int) or not 0 <= index < MAX_INDEX:
        raise ValueError(f"sample index must be an integer in [0, 2**40), got {index!r}")
    w0, w1, w2 = seed_words(seed, stream)
    lo, hi = index & MASK32, index >> 32
    a = _mix32_int(_mix32_int(lo ^ w0) ^ _mix32_int(hi ^ w1))
    b = _mix32_int(a ^ w2)
    return ((a & 0x7FFFFFFF) << 32) | b


def _use_triton(device: torch.device) -> bool:
    """CUDA draws run as Triton kernels (bit-identical) unless NOISEVISION_TRITON=0."""
    if not triton_wanted(device):
        return False
    from noisevision import rng_triton  # imports triton: only for CUDA

    return rng_triton.available(device)


def as_index_tensor(indices, device: torch.device | str | None = None) -> torch.Tensor:
    """Indices as a 1-D int64 tensor; checks the allowed range."""
    t = torch.as_tensor(indices, dtype=torch.int64, device=device).reshape(-1)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= MAX_INDEX):
        raise ValueError(f"image indices must lie in [0, 2**40), "
                         f"got [{int(t.min())}, {int(t.max())}]")
    return t


class ImageRandom:
    """Random draws for a batch of images; image b's draws depend only on (seed, stream, index b).

    Each call consumes a fixed block of counters, so the n-th call returns the same numbers for an
    image whatever else is in the batch. Every method returns a tensor shaped (B, *shape) on the
    device of `indices`.
    """

    def __init__(self, seed: int, indices: torch.Tensor, stream: str,
                 _checked: bool = False) -> None:
        self.seed = seed
        self.stream = stream
        # (child streams reuse checked indices: the range check reads the values, which on a
        # GPU would wait for the device)
        self.indices = indices if _checked else as_index_tensor(
            indices, device=indices.device if isinstance(indices, torch.Tensor) else None)
        w0, w1, w2 = seed_words(seed, stream)
        self._triton = _use_triton(self.indices.device)
        if self._triton:  # the same int64 arithmetic, one kernel (rng_triton)
            from noisevision import rng_triton

            self._key_a, self._key_b = rng_triton.keys(self.indices, w0, w1, w2)
            self._counter = 0
            return
        lo = self.indices & 0xFFFFF
        hi = self.indices >> 20
        ka = mix32(mix32(lo ^ w0) ^ (hi * 0x9E37 & MASK32))
        self._key_a = mix32(ka ^ w1)[:, None]  # (B, 1)
        self._key_b = mix32(self._key_a ^ w2)  # (B, 1)
        self._counter = 0

    @property
    def device(self) -> torch.device:
        return self.indices.device

    @property
    def batch(self) -> int:
        return self.indices.numel()

    def child(self, name: str) -> ImageRandom:
        """An independent stream for a sub-task, keyed by the same indices."""
        return ImageRandom(self.seed, self.indices, f"{self.stream}/{name}", _checked=True)

    def bits(self, *shape: int) -> torch.Tensor:
        """Uniform 32-bit integers as int64 in [0, 2**32), shape (B, *shape)."""
        n = math.prod(shape)
        start = self._counter
        self._counter += n
        if self._triton:
            from noisevision import rng_triton

            return rng_triton.bits(self._key_a, self._key_b, start, n).reshape(self.batch, *shape)
        ctr = torch.arange(start, start + n, dtype=torch.int64, device=self.device)[None, :]
        x = mix32((_mul32(ctr & MASK32, _GOLDEN32) + self._key_a) & MASK32)
        x = mix32(x ^ self._key_b)
        return x.reshape(self.batch, *shape)

    def words(self, n: int) -> np.ndarray:
        """`bits(n)` as a (B, n) uint32 numpy array, computed in uint32 arithmetic (CPU only).

        In uint32, where products wrap by definition, the same hash takes a fraction of the
        passes of the int64 tensor arithmetic; the counter advances exactly as `bits` does.
        """
        if self.device.type != "cpu":
            raise ValueError("ImageRandom.words runs on CPU indices only")
        start = self._counter
        self._counter += n
        ka = self._key_a.numpy().astype(np.uint32)  # (B, 1)
        kb = self._key_b.numpy().astype(np.uint32)
        ctr = (np.arange(start, start + n, dtype=np.uint64) & np.uint64(MASK32)).astype(
            np.uint32)
        ctr *= np.uint32(_GOLDEN32)
        return mix32(mix32(ctr[None, :] + ka) ^ kb)  # (B, n), wraps modulo 2**32

    def fast_bits(self, n: int) -> torch.Tensor:
        """`bits(n)` (B, n) bit for bit, through `words` on CPU (fast bulk draws)."""
        if self.device.type != "cpu":
            return self.bits(n)
        return torch.from_numpy(self.words(n).astype(np.int64))

    def uniform16(self, *shape: int) -> torch.Tensor:
        """(B, *shape) float32 uniforms in (0, 1) with 16-bit resolution, two per 32-bit draw.

        Layout "halves" (StyleGAN's bulk draws): with m = ceil(n / 2) words, value j < m is the
        high half of word j and value m + j its low half.
        """
        n = math.prod(shape)
        m = (n + 1) // 2
        if self.device.type == "cpu":  # the same values without int64 temporaries
            words = self.words(m)
            halves = np.empty((self.batch, 2 * m), dtype=np.float32)
            halves[:, :m] = words >> np.uint32(16)
            halves[:, m:] = words & np.uint32(0xFFFF)
            u = torch.from_numpy(halves[:, :n])
            return ((u + 0.5) * (1.0 / 65536.0)).reshape(self.batch, *shape)
        words = self.bits(m)  # (B, ceil(n / 2))
        halves = torch.cat([words >> 16, words & 0xFFFF], dim=1)[:, :n]
        return ((halves.to(torch.float32) + 0.5) * (1.0 / 65536.0)).reshape(self.batch, *shape)

    def normal16(self, *shape: int) -> torch.Tensor:
        """(B, *shape) standard normals by inverse CDF of `uniform16` (|z| <= 4.3)."""
        return torch.special.ndtri(self.uniform16(*shape))

    def uniform_fields(self, bits: int, *shape: int) -> torch.Tensor:
        """(B, *shape) float32 uniforms in (0, 1) with `bits` (8 or 16) bits, 32 // bits per draw.

        Layout "fields" (the statistical models' per-pixel fields): value per * j + k is field k
        (bits k * bits .. (k + 1) * bits - 1, lowest first) of word j.
        """
        per = 32 // bits
        n = math.prod(shape)
        word = self.bits(-(-n // per))  # (B, ceil(n / per)) int64 in [0, 2**32)
        mask = (1 << bits) - 1
        parts = torch.stack([(word >> (bits * k)) & mask for k in range(per)], dim=-1)
        values = parts.reshape(self.batch, -1)[:, :n].float()
        return ((values + 0.5) * (1.0 / (1 << bits))).view(self.batch, *shape)

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """float32 uniform in the open interval (low, high), 24 random bits each."""
        u = ((self.bits(*shape) >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)
        if low == 0.0 and high == 1.0:
            return u
        return low + (high - low) * u

    def normal(self, *shape: int, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        """float32 normal draws (Box-Muller on two uniforms)."""
        u1 = self.uniform(*shape)
        u2 = self.uniform(*shape)
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(_TWO_PI * u2)
        return z * std + mean if (mean != 0.0 or std != 1.0) else z

    def integers(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """int64 uniform in [low, high) (multiply-shift, bias < 2**-32 * (high - low))."""
        if high <= low:
            raise ValueError(f"integers() needs high > low, got [{low}, {high})")
        span = high - low
        if span > 2**31:
            raise ValueError("integers() supports spans up to 2**31")
        return low + ((self.bits(*shape) * span) >> 32)

    def laplace(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        """float32 Laplace(0, scale) draws by inversion."""
        u = self.uniform(*shape) - 0.5
        return -scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())
