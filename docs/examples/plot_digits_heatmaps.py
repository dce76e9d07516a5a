"""
Visual report on a digits CNN
=============================

A small CNN is trained on scikit-learn's embedded 8x8 digits
(:func:`~sklearn_xnn.datasets.load_digits_activations`, nothing is downloaded). We explain
its 64-unit ``relu_fc1`` layer with five x-features and look at them the way the HTML
report of :mod:`sklearn_xnn.report` does:

* which x-features each digit class uses (the head weights ``W``);
* the test images on which each x-feature fires most;
* one decision split into x-feature contributions, with a heatmap per significant
  x-feature: where in the image its evidence lies (Excitation Backprop through the CNN
  and the explainer's encoder, :func:`~sklearn_xnn.torch.xfeature_heatmaps`).

``sklearn-xnn demo`` runs the same steps from the command line (with PCA, NMF and PLS
for comparison) and writes the report as one HTML page.
"""

# %%
# The CNN and its activations
# ---------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sklearn_xnn import SRAEExplainer, compare_explainers
from sklearn_xnn.datasets import load_digits_activations
from sklearn_xnn.report import (
    head_weights_figure,
    plot_decision,
    top_activating_figure,
    write_report,
)
from sklearn_xnn.torch import ExplainedNetwork

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
# The head rebuilds logit ``c`` as ``sum_k W_ck x_k + b_c``; red weights add evidence for
# the class, blue weights remove it. The report's figures are drawn without pyplot;
# ``figure=plt.figure()`` draws one into a pyplot figure, so that it shows on this page
# (or in a notebook).
digits = [str(d) for d in range(10)]
names = list(xnn.get_feature_names_out())  # the names pandas output uses, too
head_weights_figure(xnn.coef_, output_names=digits, names=names, figure=plt.figure())

# %%
# What does each x-feature fire on?
# ---------------------------------
# One row per x-feature: the test images where it is largest (its value above each).
X_test = xnn.transform(data.Z_test)
top_activating_figure(data.images_test, X_test, n_top=8, names=names, figure=plt.figure())

# %%
# One decision, explained
# -----------------------
# :class:`~sklearn_xnn.torch.ExplainedNetwork` chains the CNN up to ``relu_fc1`` with the
# explainer, so the x-features are differentiable functions of the pixels.
# :func:`~sklearn_xnn.report.plot_decision` splits the rebuilt logit of the network's
# decision on a test image (``y``: the network's logits) into contributions ``x_k W_ck``
# (significant x-features outlined) and the bias ``b_c``,
# its own grey bar, and draws each significant x-feature's heatmap with a colour bar.
# When the bias outweighs all contributions together the figure says so: such a
# decision is carried by the intercept, not by the x-features.
network = ExplainedNetwork(data.model, xnn, layer=data.layer)
for i in (0, 1, 2):
    plot_decision(
        xnn,
        data.Z_test[i],
        y=data.y_test[i],
        image=data.images_test[i],
        network=network,
        output_names=[f"digit {d}" for d in digits],
        figure=plt.figure(),
    )

# %%
# Decisions carried by the bias
# -----------------------------
# A decision whose bias outweighs all its contributions is not explained by the
# x-features. Count them among the test images and show the first.
S_test = xnn.contributions(data.Z_test)  # (n_test, 10, K)
predicted = data.y_test.argmax(1)  # the network's decisions
S_pred = S_test[np.arange(len(S_test)), predicted]
carried = np.flatnonzero(np.abs(xnn.intercept_[predicted]) > np.abs(S_pred).sum(1))
print(f"{len(carried)} of {len(S_test)} test decisions are carried by the bias")
if len(carried):
    i = int(carried[0])
    plot_decision(
        xnn,
        data.Z_test[i],
        y=data.y_test[i],
        image=data.images_test[i],
        network=network,
        output_names=[f"digit {d}" for d in digits],
        figure=plt.figure(),
    )

# %%
# The HTML report
# ---------------
# :func:`~sklearn_xnn.report.write_report` puts a comparison table and these figures in
# one self-contained page. Here the table compares SRAE with PCA under the same linear
# head (see :ref:`sphx_glr_auto_examples_plot_compare.py` for the full comparison).
# ``compare_explainers`` fits clones; with the same ``random_state`` the SRAE clone is
# bitwise the explainer above (CPU fits are deterministic).
from sklearn.decomposition import PCA  # noqa: E402

table = compare_explainers(
    {"SRAE": xnn, "PCA": PCA(K)}, data.Z_train, data.y_train, data.Z_test, data.y_test
)
print(table)  # the main columns, the best marked; format_comparison(table, "all") for all
with tempfile.TemporaryDirectory(prefix="xnn-report-") as tmp:  # your own folder instead
    out = Path(tmp)
    path = write_report(
        out,
        table,
        explainer=xnn,
        Z=data.Z_test,
        y=data.y_test,
        images=data.images_test,
        network=network,
        output_names=digits,
        n_examples=3,
    )
    print(f"wrote {path.name} and {len(list(out.glob('*.png')))} figures")
plt.show()
