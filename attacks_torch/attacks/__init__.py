"""Batched untargeted attacks in [0, 1] pixel space: PGD (L2, L-inf), Carlini-Wagner L2, DDN."""

from attacks_torch.attacks.cw import carlini_wagner_l2
from attacks_torch.attacks.ddn import ddn
from attacks_torch.attacks.pgd import NORMS, PROJECTIONS, cross_entropy_gradient, pgd

__all__ = ["NORMS", "PROJECTIONS", "carlini_wagner_l2", "cross_entropy_gradient", "ddn", "pgd"]
