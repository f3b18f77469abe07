"""noisevision: learning to see by looking at noise.

Procedural noise generators (batched PyTorch, CPU and GPU, every image reproducible from its
index), dataset writing, contrastive pretraining, evaluation on real images and analysis of which
properties of the noise matter. After Baradad, Wulff, Wang, Isola, Torralba, "Learning to See by
Looking at Noise", NeurIPS 2021.
"""

from noisevision.generators.base import (
    Generator,
    create_generator,
    describe_generator,
    list_generators,
)

__version__ = "0.1.0"

__all__ = ["Generator", "__version__", "create_generator", "describe_generator", "list_generators"]
