"""The handler of `noisevision study` (its flags: noisevision.cli)."""

from __future__ import annotations

import argparse

from noisevision.errors import UsageError


def split_list(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UsageError(f"{flag} is empty")
    return items


def command_line(args: argparse.Namespace) -> list[str]:
    """The command as given (every flag that was set), for results.json."""
    argv = ["noisevision", "study"]
    for k, v in vars(args).items():
        if k in ("handler", "command", "worker") or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            argv.append(flag)
        elif isinstance(v, list):
            for item in v:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(v)]
    return argv


def run_study_command(args: argparse.Namespace) -> int:
    from noisevision.study.budgets import OVERRIDES
    from noisevision.study.families import from_data_spec
    from noisevision.study.runner import StudyRequest, run_study, run_worker

    if args.worker:
        return run_worker(args.out, args.worker, args.device, args.gpus_per_family, args.quiet)
    families = split_list(args.families, "--families") or []
    families += [from_data_spec(f) for f in args.family or []]
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.metrics is not None:
        from noisevision.stats import METRICS, list_metrics

        names = split_list(args.metrics, "--metrics")
        for m in names:
            if m not in list_metrics():
                raise UsageError(METRICS.unknown_message(m))
        overrides["metrics"] = tuple(names)
        from noisevision.cli.common import refuse_inapplicable
        from noisevision.stats import get_metric

        kinds = {get_metric(m).input for m in names}
        refuse_inapplicable(args, [
            ("n_inception", "inception" in kinds, "the Inception metrics (fid, kid, prc, volume)"),
            ("n", "images" in kinds, "the image metrics (colour, spectrum, coherence)")])
    if args.recipe == "moco" and "width" in overrides:  # never ignored in silence
        raise UsageError("--width (SmallAlexNet's channel multiplier) applies to --recipe small "
                         "only; the moco recipe trains a full ResNet-50: drop --width")
    if not families and not args.resume:
        raise UsageError("say which families to study: --families A,B,... (generator names, "
                         "a+b mixtures or image folders), or --resume an earlier study")
    req = StudyRequest(out=args.out, families=families or None,
                       tasks=split_list(args.tasks, "--tasks"), budget=args.budget,
                       recipe=args.recipe, seed=args.seed, overrides=overrides,
                       device=args.device, resume=args.resume, overwrite=args.overwrite,
                       parallel=args.parallel, gpus_per_family=args.gpus_per_family,
                       quiet=args.quiet, argv=command_line(args))
    out = run_study(req)
    print(f"report: {out / 'report.html'}")
    return 0
