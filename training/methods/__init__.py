"""Semi-supervised methods (SPEC.md Phase 2). Importing the package registers all fourteen.

Look one up with `training.methods.base.get_method(name_or_acronym)`; `METHODS` maps the
release's names to classes:

| name | acronym | module |
|---|---|---|
| supervised | SUP | supervised |
| pseudo_label, pseudo_label_sample_reweighting | PL-T, PL-C | pseudo_label |
| mean_teacher, ua_mt, mean_teacher_quality | MT, UA-MT, MT-QW | mean_teacher |
| ict, ict_quality | ICT, ICT-QW | ict |
| cps, cps_quality_weighted | CPS, CPS-QW | cps |
| contrastive, contrastive_quality | CL, CL-QW | contrastive |
| ours_qar, ours_pl_qw | QAR, PL-QW | ours |
"""

# Registration order is the listing order (--help, errors, tests): the paper's methods,
# then the baselines in the order of SPEC.md's table. (ours must come first anyway: the
# -QW baselines import its shared flags, and importing a module registers its methods.)
# isort: off
from training.methods import ours  # noqa: F401 - imported to register
from training.methods import supervised  # noqa: F401
from training.methods import pseudo_label  # noqa: F401
from training.methods import mean_teacher  # noqa: F401
from training.methods import ict  # noqa: F401
from training.methods import cps  # noqa: F401
from training.methods import contrastive  # noqa: F401

# isort: on
from training.methods.base import METHODS, SSLMethod, get_method

__all__ = ["METHODS", "SSLMethod", "get_method"]
