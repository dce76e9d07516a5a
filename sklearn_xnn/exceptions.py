"""Exceptions raised by sklearn_xnn (in addition to scikit-learn's own).

Bad input data and bad parameters raise scikit-learn's usual errors (``ValueError``,
``TypeError``, :class:`sklearn.utils._param_validation.InvalidParameterError`,
:class:`sklearn.exceptions.NotFittedError`); the classes below cover what is specific
to this library.
"""

__all__ = ["InvalidModelFileError", "TrainingDivergedError"]


class InvalidModelFileError(ValueError):
    """A model file is truncated, corrupted, foreign or otherwise not loadable.

    Raised by :func:`sklearn_xnn.load` and ``SRAEExplainer.load`` for every file they
    refuse: not a safetensors file, a safetensors file that sklearn_xnn did not write, a
    checksum mismatch, a missing or inconsistent fitted attribute, a non-finite weight.
    Loading never executes code from the file, whatever its content.
    """


class TrainingDivergedError(ValueError, ArithmeticError):
    """Training produced non-finite weights and no finite model could be kept.

    Raised by ``fit`` when the loss or the weights become NaN or infinite before any
    finite model exists (for example during layer-wise pre-training with a huge
    ``learning_rate_init``). When fine-tuning diverges after a finite model existed,
    ``fit`` keeps the last finite weights and warns instead.
    """
