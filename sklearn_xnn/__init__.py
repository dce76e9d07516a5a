"""sklearn_xnn: faithful, sparse, near-orthogonal explanation spaces for deep networks."""

from sklearn_xnn._persistence import load
from sklearn_xnn._srae import SRAEExplainer

__version__ = "0.1.0"

__all__ = ["SRAEExplainer", "__version__", "load"]
