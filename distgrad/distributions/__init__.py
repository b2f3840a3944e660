"""``distgrad.distributions``: the probability distributions reinforcement-learning and VAE
programs reach for, with PyTorch's names and semantics: ``Categorical``, ``Bernoulli`` and
``Normal`` (``sample``, ``log_prob``, ``entropy``, ``rsample`` for ``Normal``).
Samples are drawn from distgrad's seeded stream; ``log_prob`` and ``entropy`` are
differentiable."""

from .bernoulli import Bernoulli
from .categorical import Categorical
from .distribution import Distribution
from .normal import Normal

__all__ = ["Distribution", "Categorical", "Bernoulli", "Normal"]
