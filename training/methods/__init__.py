"""Semi-supervised methods (docs/METHOD.md §5-§7). Importing the package registers all.

`METHODS` maps each method's name (the release's) to its class, in the row order of the
paper's tables; `get_method(name_or_acronym)` looks one up. Each class carries its name,
acronym, table row, whether it needs g_phi and D_U, its lambda defaults and its own flags:
`python -m training.methods --list` prints that table for scripts.

| name | acronym | module |
|---|---|---|
| supervised | SUP | supervised |
| pseudo_label, pseudo_label_sample_reweighting | PL-T, PL-C | pseudo_label |
| mean_teacher, ua_mt, mean_teacher_quality | MT, UA-MT, MT-QW | mean_teacher |
| ict, ict_quality | ICT, ICT-QW | ict |
| cps, cps_quality_weighted | CPS, CPS-QW | cps |
| contrastive, contrastive_quality | CL, CL-QW | contrastive |
| fixmatch, fixmatch_quality | FixMatch, FixMatch-QW | fixmatch |
| unimatch, unimatch_quality, unimatch_qar | UniMatch, UniMatch-QW, UniMatch+QAR | fixmatch |
| ours_qar, ours_pl_qw | QAR, PL-QW | ours |

Multi-task methods (a task table, `--task_table`; `MULTITASK_METHODS`, docs/METHOD.md §11):

| name | acronym | module |
|---|---|---|
| pooled_supervised | Pooled | versemi |
| versemi, versemi_quality, versemi_qar | VerSemi, VerSemi-QW, VerSemi+QAR | versemi |
"""

from training.methods import (  # noqa: F401 - imported to register their methods
    contrastive,
    cps,
    fixmatch,
    ict,
    mean_teacher,
    ours,
    pseudo_label,
    supervised,
    versemi,
)
from training.methods.base import (
    METHODS,
    MULTITASK_METHODS,
    Batch,
    FeatureNet,
    SSLMethod,
    StepInfo,
    every_method,
    get_method,
)

__all__ = [
    "METHODS",
    "MULTITASK_METHODS",
    "Batch",
    "FeatureNet",
    "SSLMethod",
    "StepInfo",
    "every_method",
    "get_method",
]
