"""`noisevision analyze`: measure the paper's section-5 properties of image sources against a
reference, and relate them to probe accuracy.

Sources, read the same way everywhere (`open_source`):

* a registered generator name: images 0..n-1 rendered on the fly (seed 0), nothing written;
* a dataset folder written by `generate` (its manifest.json): its images in index order, from
  image files or from WebDataset tar shards (`generate --layout shards`);
* any folder of images (an ImageFolder tree or a plain folder, searched recursively, sorted);
* `photos`: crops of the 43 photographs that Debian packages ship (the offline default
  reference; a small proxy for ImageNet, not ImageNet).

All images of one source must share one size (they are batched); sources may differ in size.
Every source has an identity (the generator and its config, a folder's manifest or file list,
the photo crops' settings) that keys the feature cache.
"""

from noisevision.analysis.correlate import (
    FIGURES,
    PAPER_R,
    correlate,
    correlation_markdown,
    draw_figures,
    partial_correlation,
    pearson_spearman,
    probe_accuracies,
    write_correlation,
)
from noisevision.analysis.measure import (
    AnalysisConfig,
    analyze,
    markdown_table,
    source_states,
    write_analysis,
)
from noisevision.analysis.sources import PHOTOS, ImageSource, open_source

__all__ = [
    "FIGURES", "PAPER_R", "PHOTOS", "AnalysisConfig", "ImageSource", "analyze", "correlate",
    "correlation_markdown", "draw_figures", "markdown_table", "open_source",
    "partial_correlation", "pearson_spearman", "probe_accuracies", "source_states",
    "write_analysis", "write_correlation",
]
