"""Untrained StyleGAN generators (Baradad et al. 2021 section 3.4): StyleGAN-Random, -High-freq,
-Sparse and -Oriented.

Layout: config.py (StyleGANConfig), network.py (the plain synthesis network, the definition),
filters.py (wavelet banks, pink noise, resampling), plan.py (which path each layer takes, chosen
once per config and device), paths/ (the fast paths: shared.py with winograd.py and fold.py for
StyleGAN-Random, tied.py with triton.py for the wavelet variants), generator.py (StyleGAN: network
weights, per-image draws, rendering). Importing the package registers the four presets.
"""

from noisevision.generators.base import register_generator
from noisevision.generators.stylegan.config import RESOLUTIONS, StyleGANConfig
from noisevision.generators.stylegan.generator import StyleGAN

__all__ = ["RESOLUTIONS", "StyleGAN", "StyleGANConfig"]

_RANDOMIZED = {"conv_weights": "wavelet", "noise_maps": "dictionary"}
register_generator(
    "stylegan_random", StyleGAN,
    "untrained StyleGAN2, dense N(0,1) weights, no noise (smooth, low-frequency)",
    conv_weights="gaussian", noise_maps="none", bias_range=(0.0, 0.0), noise_envelope="none")
register_generator(
    "stylegan_highfreq", StyleGAN,
    "untrained StyleGAN2, sign-quantised wavelet filters and pink-noise inputs",
    filter_bank="sign", filter_subset=(40, 40), noise_envelope="none", bias_range=(0.0, 0.0),
    **_RANDOMIZED)
register_generator(
    "stylegan_sparse", StyleGAN,
    "untrained StyleGAN2, wavelets, Laplacian-enveloped pink noise and random biases",
    filter_bank="sign", filter_subset=(40, 40), noise_envelope="lanczos", bias_range=(-0.2, 0.2),
    **_RANDOMIZED)
register_generator(
    "stylegan_oriented", StyleGAN,
    "untrained StyleGAN2, tied real wavelets from random subsets, one shared noise map "
    "(the paper's best)",
    conv_weights="wavelet", filter_bank="real", filter_subset=(5, 40), noise_maps="shared",
    noise_envelope="lanczos", bias_range=(-0.2, 0.2))
