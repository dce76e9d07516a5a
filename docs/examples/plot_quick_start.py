"""
Quick start: an explanation space for planted concepts
======================================================

We build activations whose logits are driven by five planted, sparse concepts, hidden
under louder nuisance factors that the logits ignore
(:func:`~sklearn_xnn.datasets.make_concept_activations`). An
:class:`~sklearn_xnn.SRAEExplainer` learns five non-negative x-features from the
activations and a linear head that rebuilds the logits from them. Because the concepts
are known, we can check that the x-features found them.

The settings are deliberately small (a ``(128, 32)`` network, 40 epochs) so that the
example runs in seconds; see :ref:`tuning` for real settings.
"""

# %%
# Data: activations, logits and the planted concepts
# --------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.metrics import concept_recovery, cross_correlation, mean_active

Z, y, codes = make_concept_activations(1500, 64, n_concepts=5, random_state=0)
Z_train, Z_test, y_train, y_test, codes_train, codes_test = train_test_split(
    Z, y, codes, test_size=0.3, random_state=0
)
print(f"activations {Z.shape}, logits {y.shape}, planted concepts {codes.shape}")

# %%
# Fit the explainer
# -----------------
# ``y`` holds the logits to explain. ``score`` is the faithfulness R² of the logits
# rebuilt linearly from the x-features, measured here on held-out rows.
xnn = SRAEExplainer(
    n_components=5, hidden_layer_sizes=(128, 32), max_iter=40, pretrain=5, random_state=0
)
xnn.fit(Z_train, y_train)
print(f"held-out faithfulness R²: {xnn.score(Z_test, y_test):.3f}")
print(f"dead x-features: {xnn.n_dead_components_} of {xnn.n_components_}")

# %%
# The explanation space
# ---------------------
# ``transform`` gives the x-features (non-negative, a few active per input);
# ``predict`` the rebuilt logits; ``contributions`` what each x-feature adds to each
# logit, so that ``predict = contributions.sum(-1) + intercept_``.
X_test = xnn.transform(Z_test)
S_test = xnn.contributions(Z_test)  # (n_samples, n_outputs, n_components)
rebuilt = S_test.sum(axis=-1) + xnn.intercept_
print("x-features:", X_test.shape, "min", X_test.min())
print("contributions:", S_test.shape)
print("predict == sum of contributions + intercept:", np.allclose(rebuilt, xnn.predict(Z_test)))
print(f"active x-features per input: {mean_active(X_test):.2f} of {xnn.n_components_}")

# %%
# Did the x-features find the planted concepts?
# ---------------------------------------------
# :func:`~sklearn_xnn.metrics.concept_recovery` matches each concept to a distinct
# x-feature (Hungarian matching of absolute correlations) and averages the matched
# correlations: 1 is perfect recovery.
C = cross_correlation(codes_test, X_test)
print(f"concept recovery: {concept_recovery(X_test, codes_test):.3f}")

fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
im = axes[0].imshow(np.abs(C), vmin=0, vmax=1, cmap="viridis")
axes[0].set(xlabel="x-feature", ylabel="planted concept", title="|correlation| on held-out rows")
fig.colorbar(im, ax=axes[0])
# loss_curve_: the objective minimised, under the faithfulness constraint the weighted
# reconstruction and pull-away (faithfulness_history_ holds the training R² per epoch)
axes[1].plot(xnn.loss_curve_, label="objective (regularisers)")
for j, name in enumerate(["faithfulness", "reconstruction", "pull-away"]):
    axes[1].plot(xnn.loss_parts_[:, j], "--", label=name)
axes[1].set(xlabel="epoch", ylabel="loss", title="training", yscale="log")
axes[1].legend()
# n_significant_curve_: what picks the kept epoch, the significant x-features per input
# and output after each epoch (NaN where an epoch broke the faithfulness constraint)
kept = int(np.nanargmin(xnn.n_significant_curve_))
axes[2].plot(xnn.n_significant_curve_, "o-")
axes[2].plot(kept, xnn.n_significant_curve_[kept], "r*", markersize=14, label="kept epoch")
axes[2].set(xlabel="epoch", ylabel="significant x-features", title="sparsity per epoch")
axes[2].legend()
fig.tight_layout()

# %%
# Explaining one input
# --------------------
# For one held-out input and its top logit, the bars show each x-feature's contribution
# ``x_k W_ck``; their sum plus ``intercept_[c]`` is the rebuilt logit.
i = 0
c = int(np.argmax(y_test[i]))
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar([f"x{k}" for k in range(xnn.n_components_)], S_test[i, c])
ax.axhline(0, color="black", linewidth=0.8)
ax.set(title=f"input {i}: contributions to logit {c}", ylabel="x_k * W_ck")
fig.tight_layout()
plt.show()
