"""SUP: the supervised lower (and, on all labels, upper) bound (docs/METHOD.md §7)."""

from __future__ import annotations

from training.methods.base import BN_FORWARD_CHOICES, SSLMethod, register


@register
class Supervised(SSLMethod):
    """SUP: L = L_sup = DiceCE(f_theta(x_l), y_l) (Eqn 4) on the labeled batch only.

    The base class's `train_step` is exactly this loss; no unlabeled data is loaded
    (`needs_unlabeled` False), so the loop runs SUP without --unlabeled_csv (given one, it
    still spans max(labeled, unlabeled) batches per epoch, docs/METHOD.md §4.2). Trained on
    every label it gives the fully supervised upper bound.

    `--bn_forward` defaults to `labeled_only` (D_U never forwarded); `mixed`, `separate` or
    `labeled_stats` make SUP forward D_U too and discard the output, the control that
    sees D_U in BatchNorm as the SSL methods do (docs/METHOD.md §4.7).
    """

    name = "supervised"
    acronym = "SUP"
    row = 10
    lambda_variables = None
    needs_unlabeled = False
    bn_forward_default = "labeled_only"
    bn_forward_choices = ("labeled_only", *BN_FORWARD_CHOICES)
