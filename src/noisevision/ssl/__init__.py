"""Contrastive pretraining on noise: encoders, losses, MoCo v2, batched on-device augmentation,
data sources and the training loop (Baradad et al. 2021, Sec. 4; reference Sec. 8).

The stable interface for evaluation code is :func:`load_encoder` -> (model, meta) with
``model.features(x)`` and ``model.feature_dim``.
"""

from noisevision.ssl.encoders import (
    ARCHS,
    ENCODER_FORMAT,
    ResNet50Encoder,
    SmallAlexNet,
    build_encoder,
    load_encoder,
    save_encoder,
)
from noisevision.ssl.losses import (
    align_loss,
    align_uniform_loss,
    infonce_loss,
    uniform_loss,
)

__all__ = [
    "align_loss",
    "align_uniform_loss",
    "infonce_loss",
    "uniform_loss",
    "ARCHS",
    "ENCODER_FORMAT",
    "ResNet50Encoder",
    "SmallAlexNet",
    "build_encoder",
    "load_encoder",
    "save_encoder",
]
