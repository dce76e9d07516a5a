"""
Pipelines and grid search
=========================

:class:`~sklearn_xnn.SRAEExplainer` is an ordinary scikit-learn estimator: ``score`` is
the faithfulness R² of the rebuilt logits, so :class:`~sklearn.model_selection.GridSearchCV`
works without a custom scorer. Faithfulness alone rewards dense, entangled spaces,
though; :func:`~sklearn_xnn.metrics.get_explanation_scorers` adds the combined
``explanation`` score (faithfulness minus penalties for correlated and dead x-features)
and reconstruction R², and we refit on the combined score.

PCA gets the same linear head through :func:`~sklearn_xnn.make_headed`, a
:class:`~sklearn.pipeline.Pipeline` whose ``pca__n_components`` is tuned like any
other parameter.

The grid and the network are tiny so that the example runs in about a minute.
"""

# %%
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, train_test_split

from sklearn_xnn import SRAEExplainer, make_headed
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.metrics import get_explanation_scorers

Z, y, codes = make_concept_activations(1000, 64, n_concepts=5, random_state=0)
Z_train, Z_test, y_train, y_test = train_test_split(Z, y, test_size=0.3, random_state=0)

# %%
# Grid search over K and the reconstruction weight
# ------------------------------------------------
# ``refit="explanation"`` picks the parameters with the best combined score; every
# scorer's cross-validated value is kept in ``cv_results_``.
srae = SRAEExplainer(hidden_layer_sizes=(128, 32), max_iter=30, pretrain=3, random_state=0)
param_grid = {"n_components": [3, 5], "alpha_reconstruction": [0.1, 1.0]}
search = GridSearchCV(
    srae, param_grid, scoring=get_explanation_scorers(), refit="explanation", cv=2
)
search.fit(Z_train, y_train)

columns = ["param_n_components", "param_alpha_reconstruction"] + [
    f"mean_test_{name}" for name in ("faithfulness_r2", "explanation", "reconstruction_r2")
]
results = pd.DataFrame(search.cv_results_)[columns]
print(results.round(3).to_string(index=False))
print("best:", search.best_params_)

# %%
# Parallel searches and torch threads
# -----------------------------------
# ``GridSearchCV(..., n_jobs=2)`` runs two fits at a time in joblib's worker processes
# (and ``joblib.parallel_config(backend="dask")`` runs them on a Dask cluster, see
# :ref:`scaling`). Each fit sets torch's intra-op thread count for its own duration
# and restores it afterwards. By default the count never exceeds torch's current
# setting, ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (joblib gives each of its
# ``n_jobs`` workers ``cores // n_jobs``, or ``inner_max_num_threads`` of
# ``joblib.parallel_config``), and the CPUs the process may use; so two parallel fits
# do not each start one thread per core. Set ``SKLEARN_XNN_NUM_THREADS`` to choose the
# count yourself. The search above runs sequentially: this page is built on a small
# machine, where one thread per fit is the fastest setting for these tiny networks.

# %%
# With several scorers, ``search.score`` uses the refit scorer (``explanation``);
# the explainer's own ``score`` is faithfulness R².
best = search.best_estimator_
print(f"held-out explanation score (search.score): {search.score(Z_test, y_test):.3f}")
print(f"held-out faithfulness R² (best.score):      {best.score(Z_test, y_test):.3f}")

# %%
# The same search for PCA with a linear head
# ------------------------------------------
pca_search = GridSearchCV(make_headed(PCA()), {"pca__n_components": [3, 5, 10]}, cv=2).fit(
    Z_train, y_train
)
pca_scores = pd.Series(
    pca_search.cv_results_["mean_test_score"],
    index=pca_search.cv_results_["param_pca__n_components"],
    name="PCA faithfulness R²",
)
print(pca_scores.round(3))

fig, ax = plt.subplots(figsize=(5, 3.2))
for alpha, group in results.groupby("param_alpha_reconstruction"):
    ax.plot(
        group["param_n_components"].astype(int),
        group["mean_test_faithfulness_r2"],
        "o-",
        label=f"SRAE, alpha_reconstruction={alpha}",
    )
ax.plot(pca_scores.index.astype(int), pca_scores.values, "s--", label="PCA + linear head")
ax.set(xlabel="K (n_components)", ylabel="CV faithfulness R²", title="Choosing K")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
