"""StyleGAN's fast paths, each equal to the plain network (network.synthesize with
conv_reference) up to float rounding; stylegan/plan.py picks one per (config, device, dtype):

* shared.py: StyleGAN-Random, one dense weight per network: per layer "direct", "parity",
  "winograd" (winograd.py, CPU) or "fold" (fold.py, CUDA);
* tied.py: the wavelet variants, filters tied to input channels, no dense convolution; on CUDA
  its channel sums run as one Triton kernel (triton.py).
"""
