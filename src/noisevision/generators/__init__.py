"""Generator families, discovered: importing this package imports every module and subpackage
in it, and each family module registers its presets on import (`register_generator`). A new
family is one new module here, nothing else to edit. Modules whose name starts with "_" and the
helpers listed in HELPERS are not families and are imported by the families that need them.
"""

import importlib
import pkgutil

from noisevision.generators.base import (
    GENERATORS,
    Generator,
    cheap_generator,
    create_generator,
    describe_generator,
    generator_from_description,
    list_generators,
    register_generator,
)

HELPERS = {"base", "histmatch", "histmatch_triton", "steerable", "dead_leaves_triton", "parallel"}

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _module.name.startswith("_") and _module.name not in HELPERS:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "GENERATORS",
    "Generator",
    "cheap_generator",
    "create_generator",
    "describe_generator",
    "generator_from_description",
    "list_generators",
    "register_generator",
]
