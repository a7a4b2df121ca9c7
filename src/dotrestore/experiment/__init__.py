"""The α-sweep experiment of the DOT paper: ``run(ExperimentConfig(...))`` and the bundled demo.

>>> from dotrestore.experiment import ExperimentConfig, run
>>> result = run(ExperimentConfig(clean="photos/", degrade="noise:sigma=50",
...                               restorer="gaussian-blur:sigma=2", vae="pixel", out="exp"))
>>> result.report  # exp/report.md
"""

from .config import DEFAULT_ALPHAS, ExperimentConfig
from .report import alpha_dirname
from .runner import ExperimentResult, run


def demo(*args, **kwargs):
    """See :func:`dotrestore.experiment.demo.demo` (imported lazily: it needs scikit-image's data)."""
    from .demo import demo as _demo

    return _demo(*args, **kwargs)


__all__ = ["ExperimentConfig", "ExperimentResult", "run", "demo", "alpha_dirname", "DEFAULT_ALPHAS"]
