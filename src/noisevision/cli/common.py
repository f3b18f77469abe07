"""Shared by the subcommands: index lists, --set options, the flags a user gave, the Handler
type."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable

from noisevision.argtypes import (
    MAX_INDEX,
)
from noisevision.errors import UsageError

Handler = Callable[[argparse.Namespace], int | None]


def parse_indices(text: str, limit: int | None = None, what: str = "--indices") -> list[int]:
    """'0-9999' or '1,5,7' or '0-3,10' -> list of ints in [0, 2**40), at most `limit` of them."""
    spans: list[tuple[int, int]] = []
    example = "(expected e.g. 0-15 or 1,5,7: indices in 0..2**40-1)"
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = (int(x) for x in part.split("-", 1))
            elif part:
                a = b = int(part)
            else:
                continue
            if a < 0 or b < a or b >= MAX_INDEX:
                raise ValueError
            spans.append((a, b + 1))
    except ValueError:
        raise UsageError(f"bad {what} {text!r} {example}") from None
    total = sum(b - a for a, b in spans)
    if not total:
        raise UsageError(f"bad {what} {text!r} {example}")
    if limit is not None and total > limit:
        raise UsageError(f"{what} {text!r} names {total:,} images; at most {limit:,} allowed "
                         "here")
    return [i for a, b in spans for i in range(a, b)]


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="generator option (repeatable), e.g. --set compute_dtype=float32 "
                        "--set noise_alpha=[0.5,2]; values are JSON, else text; the options "
                        "of a generator are listed by `noisevision list --config NAME`")


def parse_set(items: list[str]) -> dict:
    """["k=v", ...] -> {k: v}, v parsed as JSON (numbers, lists, true/false) or kept as text."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set width=0.5")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def generator_options(args: argparse.Namespace) -> dict:
    """--set options with --resolution (when given) over them: one config, validated once."""
    opts = parse_set(args.set)
    if getattr(args, "resolution", None) is not None:
        opts["resolution"] = args.resolution
    return opts


def bounded_count(limit: int):
    from noisevision.argtypes import bounded_int
    return bounded_int(1, f"an integer in 1..{limit}", limit)


def format_indices(indices: list[int], limit: int = 20) -> str:
    """[1, 2, 3, 7] -> '1-3,7' (at most `limit` runs shown, then '...')."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:limit])
    return text + (",..." if len(runs) > limit else "")


# ------------------------------------------------------------------- flags that would be ignored

_GIVEN = "_given_flags"


def track_given(parser: argparse.ArgumentParser) -> None:
    """Let `given(args)` tell the flags a user typed from argparse's defaults: every optional
    action of `parser` records its flag when it runs (argparse runs an action only for a flag on
    the command line; a subcommand's namespace is copied into the top one, records included)."""
    for action in parser._actions:
        if action.option_strings and not isinstance(
                action, (argparse._HelpAction, argparse._VersionAction)):
            action.__class__ = _recording(type(action))


@functools.cache
def _recording(base: type) -> type:
    def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807
        if getattr(namespace, _GIVEN, None) is None:
            setattr(namespace, _GIVEN, {})
        getattr(namespace, _GIVEN)[self.dest] = option_string or self.option_strings[0]
        return base.__call__(self, parser, namespace, values, option_string)

    return type(f"Recording{base.__name__}", (base,), {"__call__": __call__})


def given(args: argparse.Namespace) -> dict[str, str]:
    """dest -> the flag as typed, for every flag on the command line."""
    return dict(getattr(args, _GIVEN, None) or {})


def refuse_inapplicable(args: argparse.Namespace,
                        rules: list[tuple[str, bool, str]]) -> None:
    """A flag given where it has no effect is refused, never ignored in silence: for each rule
    (dest, applies, where), UsageError "FLAG applies to WHERE only" if the flag was given and
    does not apply."""
    typed = given(args)
    for dest, applies, where in rules:
        if dest in typed and not applies:
            flag = typed[dest]
            raise UsageError(f"{flag} applies to {where} only; it would be ignored here: drop "
                             f"{flag}")
