"""SUP: the supervised lower (and, on all labels, upper) bound (docs/METHOD.md §7)."""

from __future__ import annotations

from training.methods.base import SSLMethod, register


@register
class Supervised(SSLMethod):
    """SUP: L = L_sup = DiceCE(f_theta(x_l), y_l) (Eqn 4) on the labeled batch only.

    The base class's `train_step` is exactly this loss; no unlabeled data is loaded
    (`needs_unlabeled` False), so the loop runs SUP without --unlabeled_csv (given one, it
    still spans max(labeled, unlabeled) batches per epoch, docs/METHOD.md §4.2). Trained on
    every label it gives the fully supervised upper bound.
    """

    name = "supervised"
    acronym = "SUP"
    row = 10
    lambda_variables = None
    needs_unlabeled = False
