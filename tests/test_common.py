"""scikit-learn's own estimator checks."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_xnn import SRAEExplainer
from tests.conftest import FAST


@parametrize_with_checks([SRAEExplainer(random_state=0, **FAST)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
