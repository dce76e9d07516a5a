"""scikit-learn's own estimator checks, at the fast test settings and at 5 epochs."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_xnn import SRAEExplainer
from tests.conftest import FAST


@parametrize_with_checks(
    [
        SRAEExplainer(random_state=0, **FAST),
        # the faithful start makes even a short fit a good regressor (check_regressors_train)
        SRAEExplainer(random_state=0, max_iter=5, device="cpu"),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
