"""The `noisevision` command: argparse subcommands that parse flags and call one library function.

A user error (UsageError) prints one line `noisevision: error: ...` and exits with status 2.
Subcommands register through COMMANDS: (name, help, add_arguments, handler); their flags and
handlers live in cli/data.py (list, preview, generate, verify), cli/train.py (pretrain) and
cli/evaluate.py (probe, demo, analyze, study, visualize), shared helpers in cli/common.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from noisevision.cli.common import (  # noqa: F401  (the package's public helpers)
    Handler,
    bounded_count,
    format_indices,
    generator_options,
    parse_indices,
    parse_set,
    track_given,
)
from noisevision.cli.data import (  # noqa: F401  (_cmd_generate: tests call it directly)
    _add_generate,
    _add_list,
    _add_preview,
    _add_verify,
    _cmd_generate,
    _cmd_list,
    _cmd_preview,
    _cmd_verify,
)
from noisevision.cli.evaluate import (
    _add_analyze,
    _add_demo,
    _add_probe,
    _add_study,
    _add_visualize,
    _cmd_analyze,
    _cmd_demo,
    _cmd_probe,
    _cmd_study,
    _cmd_visualize,
)
from noisevision.cli.train import _add_pretrain, _cmd_pretrain, pretrain_flags  # noqa: F401
from noisevision.errors import Stopped, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `noisevision: error: ...`, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"noisevision: error: {message} (see `{self.prog} --help`)\n")


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = [
    ("list", "list generators with a one-line description", _add_list, _cmd_list),
    ("preview", "render a labelled contact sheet of a generator", _add_preview, _cmd_preview),
    ("generate", "write a dataset of generated images (resumable)", _add_generate, _cmd_generate),
    ("verify", "regenerate sampled images of a dataset and compare", _add_verify, _cmd_verify),
    ("pretrain", "contrastive pretraining on generators or image folders (resumable)",
     _add_pretrain, _cmd_pretrain),
    ("probe", "linear probe / kNN of frozen encoders on real images (ImageFolder, suites, "
     "fashion-mnist, photo-crops)", _add_probe, _cmd_probe),
    ("demo", "the main job: samples, tiny pretraining on noise, probes vs baselines, report",
     _add_demo, _cmd_demo),
    ("analyze", "measure the paper's properties of image sources (colour, spectrum, "
     "coherence, FID, KID, precision/recall, log-volume) and correlate them with accuracy",
     _add_analyze, _cmd_analyze),
    ("study", "the paper's experiment: pretrain on every family, probe every task, measure "
     "properties, report.html with Figures 3, 4, 6, 7 (resumable)", _add_study, _cmd_study),
    ("visualize", "feature visualisations of an encoder's units, one sheet row per layer "
     "(the paper's Figure 5)", _add_visualize, _cmd_visualize),
]


def build_parser() -> argparse.ArgumentParser:
    from noisevision import __version__

    parser = _Parser(
        prog="noisevision",
        description="Learning to see by looking at noise: generators, datasets, pretraining, "
                    "evaluation.")
    parser.add_argument("--version", action="version", version=f"noisevision {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_arguments, handler in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        track_given(p)  # handlers refuse flags that would be ignored (refuse_inapplicable)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. The project's errors (bad input, missing or corrupt files, full disk,
    memory) become one line `noisevision: error: ...` and exit status 2; bugs keep their
    traceback."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m noisevision -- CMD`: some launchers pass the -- on
        argv = argv[1:]
    args = parser.parse_args(argv)
    sys.unraisablehook = _quiet_loader_shutdown(sys.unraisablehook)
    try:
        return int(args.handler(args) or 0)
    except UsageError as exc:
        return _fail(str(exc))
    except Stopped as exc:  # progress saved: a scheduler's requeue continues with --resume
        print(f"noisevision: {exc.message}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("noisevision: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except MemoryError:
        return _fail("out of memory: lower --batch-size, --n, --images or --resolution")
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return _fail(f"{exc.strerror or exc}{where}")
    except RuntimeError as exc:
        text = str(exc).lower()
        if "out of memory" in text and "cuda" in text:
            return _fail("out of memory on the device: lower --batch-size, --images or "
                         "--resolution")
        if "out of memory" in text or "can't allocate memory" in text:  # torch's allocators
            return _fail(f"out of memory ({_allocation(str(exc))}): lower the sizes this "
                         "command was given (--batch-size, --n, --images, --resolution, ...)")
        if text.startswith("dataloader worker") and ("killed by signal" in text
                                                     or "exited unexpectedly" in text):
            # the kernel's OOM killer, or a kill from outside: what was saved stays
            return _fail(f"a data-loading process died ({str(exc).strip()}): out of memory "
                         "or killed from outside; lower --workers or --batch-size and rerun "
                         "the same command (pretrain: with --resume, from the last checkpoint)")
        raise


def _quiet_loader_shutdown(hook):
    """torch raises "DataLoader worker (pid N) is killed" inside a finished epoch's loader
    `__del__` when a worker died after delivering every batch (killed as its epoch ended):
    nothing was lost and training goes on, so that report is dropped instead of printed as
    "Exception ignored ..." with a traceback. A death mid-epoch still stops the run (main)."""
    if getattr(hook, "noisevision_quiet", False):
        return hook  # main() called again in one process (tests): wrapped once

    def unraisable(info):
        if (isinstance(info.exc_value, RuntimeError)
                and str(info.exc_value).startswith("DataLoader worker")
                and "DataLoaderIter.__del__" in repr(info.object)):
            return
        hook(info)

    unraisable.noisevision_quiet = True
    return unraisable


def _allocation(message: str) -> str:
    """'tried to allocate 1.2 TiB' from an allocator's message, else 'an allocation failed'."""
    import re

    m = re.search(r"allocate (\d+) bytes", message)
    if not m:
        return "an allocation failed"
    n = float(m.group(1))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"tried to allocate {n:.1f} {unit}"
        n /= 1024
    return "an allocation failed"


def _fail(message: str) -> int:
    line = " ".join(str(message).split())  # always one line
    print(f"noisevision: error: {line}", file=sys.stderr)
    return 2
