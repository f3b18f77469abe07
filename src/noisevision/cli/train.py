"""`pretrain`: its flags are built from ssl.train.PretrainConfig (one default, one help)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from noisevision import argtypes
from noisevision.errors import UsageError


def pretrain_flags() -> list[tuple[str, str]]:
    """(flag, PretrainConfig field) for every config field that is a `pretrain` flag."""
    import dataclasses

    from noisevision.ssl.train import PretrainConfig

    out = []
    for f in dataclasses.fields(PretrainConfig):
        flag = f.metadata.get("flag")
        if flag != "" and "help" in f.metadata:
            out.append((flag or "--" + f.name.replace("_", "-"), f.name))
    return out


def _add_pretrain(p: argparse.ArgumentParser) -> None:
    """The flags come from PretrainConfig: one default and one help text, shown here. Every
    argparse default is None, so the flags a user gave are known (and checked on --resume)."""
    import dataclasses

    from noisevision.ssl.train import PretrainConfig

    fields = {f.name: f for f in dataclasses.fields(PretrainConfig)}
    p.add_argument("--out", required=True, help="run folder")
    from noisevision.ssl.run_folder import RESUME_CHANGEABLE

    p.add_argument("--resume", action="store_true",
                   help="continue RUN/checkpoint.pt (or start a run that has none yet from step "
                        "0); only " + ", ".join("--" + c.replace("_", "-")
                                                for c in RESUME_CHANGEABLE) + " may change")
    p.add_argument("--continuous", action="store_const", const="continuous",
                   dest="generator_mode", help="same as --generator-mode continuous")
    for flag, name in pretrain_flags():
        f = fields[name]
        kwargs = dict(f.metadata["argparse"])
        if isinstance(kwargs.get("type"), str):
            kwargs["type"] = argtypes.BY_NAME[kwargs["type"]]
        help_text = f.metadata["help"]
        if f.default not in (None, "") and kwargs.get("action") != "store_true":
            help_text += f" (default: {f.default})"
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = flag[2:].upper().replace("-", "_")
        p.add_argument(flag, dest=name, default=None, help=help_text, **kwargs)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from noisevision.cli.common import refuse_inapplicable
    from noisevision.safety import check_output_dir
    from noisevision.ssl.config import has_generator
    from noisevision.ssl.run_folder import stored_config
    from noisevision.ssl.train import PretrainConfig, pretrain

    check_output_dir(args.out)
    given = {name: getattr(args, name) for _, name in pretrain_flags()
             if getattr(args, name) is not None}
    if "data" not in given and not args.resume:
        raise UsageError("say what to train on: --data SOURCE[:WEIGHT],... (generator names "
                         "or image folders)")
    # --resume: the flags given over the run's own config, not over the defaults (a moco run's
    # --moco-queue is checked against its recipe and batch)
    base = (stored_config(Path(args.out)) or {}) if args.resume else {}
    cfg = PretrainConfig(**{**base, **given, "out": args.out})
    if cfg.data:
        refuse_inapplicable(args, [("generator_mode", has_generator(cfg.data),
                                    "--data that names a generator")])
    run = pretrain(cfg, resume=args.resume, explicit=set(given))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"{run}: encoder.pt written")
    return 0
