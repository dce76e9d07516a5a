"""sklearn_xnn: faithful, sparse, near-orthogonal explanation spaces for deep networks."""

from sklearn_xnn._persistence import load
from sklearn_xnn._srae import SRAEExplainer
from sklearn_xnn.baselines import PLSEmbedding, RandomNonnegativeProjection, make_headed
from sklearn_xnn.compare import compare_explainers, default_explainers
from sklearn_xnn.model_selection import SRAEExplainerCV, sweep

__version__ = "0.2.dev0"

__all__ = [
    "PLSEmbedding",
    "RandomNonnegativeProjection",
    "SRAEExplainer",
    "SRAEExplainerCV",
    "__version__",
    "compare_explainers",
    "default_explainers",
    "load",
    "make_headed",
    "sweep",
]
