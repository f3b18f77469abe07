"""Generator families. Importing this package registers every family's presets."""

from noisevision.generators import (
    dead_leaves,  # noqa: F401  (registers dead_leaves_*)
    statistical,  # noqa: F401  (registers stat_*)
    stylegan,  # noqa: F401  (registers stylegan_*)
    textured,  # noqa: F401  (registers dead_leaves_textured)
)
from noisevision.generators.base import (
    GENERATORS,
    Generator,
    create_generator,
    describe_generator,
    generator_from_description,
    list_generators,
    register_generator,
)

__all__ = [
    "GENERATORS",
    "Generator",
    "create_generator",
    "describe_generator",
    "generator_from_description",
    "list_generators",
    "register_generator",
]
