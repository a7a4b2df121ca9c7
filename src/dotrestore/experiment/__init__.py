"""The α-sweep experiment of the DOT paper: ``run(ExperimentConfig(...))`` and the bundled demo.

>>> from dotrestore.experiment import ExperimentConfig, run
>>> result = run(ExperimentConfig(clean="photos/", degrade="noise:sigma=50",
...                               restorer="gaussian-blur:sigma=2", vae="pixel", out="exp"))
>>> result.report  # exp/report.md
"""

from ..tasks.apply import alpha_dirname
from .config import DEFAULT_ALPHAS, ExperimentConfig

# Imported eagerly (it is cheap: scikit-image's photographs are read only when it runs) so
# that the function, not the submodule of the same name, is the package's ``demo``: a lazy
# import would rebind ``experiment.demo`` to the module on first use.
from .demo import demo  # noqa: E402  (after run: demo.py imports it)
from .runner import ExperimentResult, run

__all__ = ["ExperimentConfig", "ExperimentResult", "run", "demo", "alpha_dirname", "DEFAULT_ALPHAS"]
