"""Evaluation on real images: frozen features, linear probe, kNN, the paper's baselines,
evaluation datasets (ImageFolder trees, suites, offline Fashion-MNIST and photo crops) and the
end-to-end demo (Baradad et al. 2021, Sec. 4; reference-implementation.md Sec. 8.2-8.4)."""

from noisevision.probe.baselines import MeanColour, RawPixels, random_init_encoder
from noisevision.probe.datasets import (
    EvalTask,
    load_fashion_mnist,
    load_image_folder,
    load_photo_crops,
    load_suite,
    load_tasks,
)
from noisevision.probe.evaluate import KnnConfig, evaluate, results_markdown, write_results
from noisevision.probe.features import extract_features, transforms_for
from noisevision.probe.knn import knn_accuracy, knn_predict
from noisevision.probe.linear import LinearProbeConfig, linear_probe, recipe_for
from noisevision.probe.load import load_probe_encoder

__all__ = [
    "EvalTask", "KnnConfig", "LinearProbeConfig", "MeanColour", "RawPixels", "evaluate",
    "extract_features", "knn_accuracy", "knn_predict", "linear_probe", "load_fashion_mnist",
    "load_image_folder", "load_photo_crops", "load_probe_encoder", "load_suite", "load_tasks",
    "random_init_encoder", "recipe_for", "results_markdown", "transforms_for", "write_results",
]
