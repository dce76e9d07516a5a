"""
Comparing SRAE with PCA, NMF, PLS and a random projection
=========================================================

:func:`~sklearn_xnn.compare_explainers` fits every explainer on the training rows and
measures all explanation metrics on held-out rows. Methods without a head (PCA, NMF, the
random projection) get the same least-squares linear head on their training embedding,
so faithfulness is compared on equal footing. The random non-negative projection is the
sanity row: a metric that cannot tell it from SRAE measures nothing.

On planted-concept data the activations are dominated by nuisance factors that the logits
ignore. Variance-driven methods (PCA, NMF) spend their components on those factors;
a faithful explainer has to find the concepts instead, which ``concept_recovery``
measures against the planted codes.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from sklearn_xnn import compare_explainers, default_explainers
from sklearn_xnn.compare import COLUMN_INFO, describe_losses, format_comparison
from sklearn_xnn.datasets import make_concept_activations

Z, y, codes = make_concept_activations(1500, 64, n_concepts=5, random_state=0)
Z_train, Z_test, y_train, y_test, _, codes_test = train_test_split(
    Z, y, codes, test_size=0.3, random_state=0
)

# %%
# Five explainers with K = 5
# --------------------------
# ``default_explainers`` returns SRAE, PCA, NMF, PLS and the random projection; a small
# SRAE network keeps the example fast.
explainers = default_explainers(
    5,
    random_state=0,
    srae_params=dict(hidden_layer_sizes=(128, 32), max_iter=40, pretrain=5),
)
table = compare_explainers(explainers, Z_train, y_train, Z_test, y_test, codes_test=codes_test)

# %%
# Reading the table
# -----------------
# The result is a :class:`pandas.DataFrame` that prints readably: the main columns
# (:data:`~sklearn_xnn.compare.DEFAULT_COLUMNS`), one line per metric, ``*`` on the best
# explainer and the direction that is better; the notes (skipped methods, warnings) below.
print(table)

# %%
# Every column is defined in :data:`~sklearn_xnn.compare.COLUMN_INFO` (the HTML report
# shows the same definitions as a legend and in header tooltips):
for column in ["faithfulness_r2", "reconstruction_r2", "contribution_corr", "concept_recovery"]:
    info = COLUMN_INFO[column]
    print(f"{column}: {info.meaning} ({info.better} is better)")

# %%
# PCA wins reconstruction by construction: its components follow variance, which is
# mostly not what the decision uses. :func:`~sklearn_xnn.compare.describe_losses` says,
# from the numbers, every metric on which another method beats SRAE; a comparison that
# hides its losses is not worth much.
for sentence in describe_losses(table):
    print("-", sentence)

# %%
# The remaining columns (RMSE, KL, the pull-away variants, ...) on request:
print(format_comparison(table, columns=["rmse", "kl", "pullaway_samples", "n_components"]))

# %%
# Four headline metrics side by side:
metrics = ["faithfulness_r2", "concept_recovery", "reconstruction_r2", "contribution_corr"]
ax = table[metrics].plot.bar(figsize=(8, 3.5), rot=0)
ax.axhline(0, color="black", linewidth=0.8)
ax.set(title="Held-out explanation metrics, K = 5", ylabel="value")
ax.legend(fontsize=8, ncols=2)
plt.tight_layout()
plt.show()

# %%
# How many components?
# --------------------
# ``table.k_curve`` (:func:`~sklearn_xnn.compare.k_curve`) tells how faithful K
# components can be at all: the R² of the best rank-K linear predictor of the logits (no
# linear K-dimensional explanation beats it on the training rows) next to the variance
# PCA's K components explain. The five planted concepts show as the knee of the first
# curve, while PCA's variance keeps climbing through the nuisance factors.
# ``SRAEExplainer(n_components="auto")`` takes the smallest K within 0.98 of the curve's
# maximum.
from sklearn_xnn.report import k_curve_figure  # noqa: E402

print(table.k_curve.head(8).round(3))
k_curve_figure(table.k_curve, k=5)
plt.show()
