"""
Visual explanations on a digits CNN
===================================

A small CNN is trained on scikit-learn's embedded 8x8 digits
(:func:`~sklearn_xnn.datasets.load_digits_activations`, nothing is downloaded). We explain
its 64-unit ``relu_fc1`` layer with five x-features, then look at the x-features on the
images:

* which x-features each digit class uses (mean contribution to its own logit);
* the test images on which each x-feature fires most;
* where in those images the x-feature's evidence lies, with contrastive Excitation
  Backprop through the CNN and the explainer's encoder
  (:func:`~sklearn_xnn.torch.xfeature_heatmaps`).
"""

# %%
# The CNN and its activations
# ---------------------------
import matplotlib.pyplot as plt
import numpy as np

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import load_digits_activations
from sklearn_xnn.torch import ExplainedNetwork, xfeature_heatmaps

data = load_digits_activations(epochs=20, random_state=0)
print(f"CNN held-out accuracy: {data.accuracy:.3f}")
print(f"layer {data.layer!r}: Z_train {data.Z_train.shape}, logits {data.y_train.shape}")

# %%
# An explanation space for the ten logits
# ---------------------------------------
K = 5
xnn = SRAEExplainer(
    n_components=K, hidden_layer_sizes=(128, 32), max_iter=40, pretrain=5, random_state=0
)
xnn.fit(data.Z_train, data.y_train)
print(f"held-out faithfulness R²: {xnn.score(data.Z_test, data.y_test):.3f}")
top1 = np.mean(xnn.predict(data.Z_test).argmax(1) == data.y_test.argmax(1))
print(f"top-1 agreement with the CNN: {top1:.3f}")

# %%
# Which x-features does each class use?
# -------------------------------------
# Mean contribution ``x_k W_ck`` of each x-feature to the logit of the true class,
# over the test images of that class.
S = xnn.contributions(data.Z_test)  # (n_test, 10, K)
labels = data.labels_test
own = S[np.arange(len(labels)), labels]  # contribution to the true class's logit
per_class = np.stack([own[labels == c].mean(0) for c in range(10)])
lim = np.abs(per_class).max()
fig, ax = plt.subplots(figsize=(4.5, 4.5))
im = ax.imshow(per_class, cmap="RdBu_r", vmin=-lim, vmax=lim)
ax.set(xlabel="x-feature", ylabel="digit class", xticks=range(K), yticks=range(10))
ax.set_title("mean contribution to the class logit")
fig.colorbar(im, ax=ax, shrink=0.8)
fig.tight_layout()

# %%
# Where is each x-feature's evidence?
# -----------------------------------
# :class:`~sklearn_xnn.torch.ExplainedNetwork` chains the CNN up to ``relu_fc1`` with the
# explainer's encoder, so the x-features are differentiable functions of the pixels. For
# each x-feature we show the three test images where it is largest and its contrastive
# Excitation Backprop map on them.
network = ExplainedNetwork(data.model, xnn, layer=data.layer)
X_test = xnn.transform(data.Z_test)
n_top = 3
fig, axes = plt.subplots(K, 2 * n_top, figsize=(2 * n_top * 1.2, K * 1.3))
for k in range(K):
    top = np.argsort(-X_test[:, k])[:n_top]
    maps = xfeature_heatmaps(network, data.images_test[top], components=[k])[:, 0]
    for j, (i, heat) in enumerate(zip(top, maps)):
        image = data.images_test[i, 0]
        axes[k, 2 * j].imshow(image, cmap="gray_r")
        axes[k, 2 * j + 1].imshow(image, cmap="gray_r")
        axes[k, 2 * j + 1].imshow(heat, cmap="jet", alpha=0.5)
        axes[k, 2 * j].set_title(f"digit {labels[i]}", fontsize=7)
    axes[k, 0].set_ylabel(f"x{k}", rotation=0, labelpad=12)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Top test images per x-feature and their excitation maps", fontsize=9)
fig.tight_layout()
plt.show()
