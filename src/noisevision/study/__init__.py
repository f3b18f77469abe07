"""`noisevision study`: the paper's experiment (Baradad et al. 2021, Sec. 4-5) as one resumable
command: pretrain an encoder on every noise family, probe it on real tasks against the
baselines, measure the family's properties, and draw Figures 3, 4, 6 and 7 into one
self-contained report.html.

    from noisevision.study import StudyRequest, run_study
    run_study(StudyRequest(out="study", families=["dead_leaves_shapes", "stylegan_oriented"],
                           tasks=["fashion-mnist"], budget="tiny"))

Modules: budgets (the sizes), families (family and task specs), folder (the study folder, its
settings and step files), steps (pretrain, sheet, probe, properties, baselines), schedule
(worker processes, GPUs, torchrun), report (results.json/.md, figures, report.html), runner
(the orchestration) and commands (the CLI handler).
"""

from noisevision.study.budgets import BUDGETS, StudyBudget, resolve_budget
from noisevision.study.runner import StudyRequest, run_study

__all__ = ["BUDGETS", "StudyBudget", "StudyRequest", "resolve_budget", "run_study"]
