"""Parameter constraints shared by the dataset generators."""

from numbers import Integral

from sklearn.utils._param_validation import Interval


class IntInterval(Interval):
    """An :class:`~sklearn.utils._param_validation.Interval` of ints that refuses booleans.

    ``True`` is a :class:`numbers.Integral`, so a plain ``Interval(Integral, ...)`` lets it
    through as a size; scikit-learn's own checks treat it as a mistake, and so do these.
    """

    def __init__(self, left, right=None, *, closed="left"):
        super().__init__(Integral, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)
