"""scikit-learn's own estimator checks, at the fast test settings and at 5 epochs, with
``n_init`` and for :class:`~sklearn_xnn.SRAEExplainerCV`."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_xnn import SRAEExplainer, SRAEExplainerCV
from tests.conftest import FAST


@parametrize_with_checks(
    [
        SRAEExplainer(random_state=0, **FAST),
        # the faithful start makes even a short fit a good regressor (check_regressors_train)
        SRAEExplainer(random_state=0, max_iter=5, device="cpu"),
        # several initialisations trained as one stacked network, and the batched search
        SRAEExplainer(random_state=0, n_init=2, **FAST),
        SRAEExplainerCV(SRAEExplainer(random_state=0, **FAST), {"alpha_pullaway": [0, 0.1]}, cv=2),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
