"""The inference methods by name: ``METHODS[name]`` is an :class:`~bayesresnet.infer.base.Engine`.

Its own module (re-exported by :mod:`bayesresnet.infer`) so that the diagnostics can
reach the engines' checks without importing :func:`bayesresnet.infer.fit`, which builds a
:class:`~bayesresnet.posterior.Posterior`.
"""

from __future__ import annotations

from bayesresnet.infer import ensemble, mclmc, nuts, svi
from bayesresnet.infer.base import Engine

__all__ = ["METHODS"]

#: method name → its :class:`~bayesresnet.infer.base.Engine` (config class first).
METHODS: dict[str, Engine] = {
    "nuts": nuts.ENGINE,
    "mclmc": mclmc.ENGINE,
    "svi": svi.ENGINE,
    "ensemble": ensemble.ENGINE,
}
