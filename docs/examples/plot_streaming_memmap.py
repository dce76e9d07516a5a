"""
Streaming a large memmap
========================

Activations of a large data set rarely fit in memory. Stored as a ``.npy`` file they can
be opened as a :class:`numpy.memmap`, which reads rows from disk on demand. There are two
ways to train on it without loading it:

* ``fit`` streams any ``X`` whose float32 copy would exceed ``stream_threshold`` bytes
  (1 GiB by default): each minibatch is read from disk and moved to the device;
* ``partial_fit`` trains on one chunk of rows per call, for data that arrives in pieces.

Inference is row-wise, so ``transform`` runs chunk by chunk as well. The "large" file here
is small (60,000 x 64 float32, 15 MB) so that the example runs in seconds; we lower
``stream_threshold`` to make ``fit`` stream it anyway. Nothing else depends on its size.
"""

# %%
# Activations on disk
# -------------------
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations

n_rows, n_features, chunk = 60_000, 64, 10_000
tmp = tempfile.TemporaryDirectory(prefix="xnn-stream-")  # removed at the end
folder = Path(tmp.name)
Z_file = np.lib.format.open_memmap(
    folder / "Z.npy", mode="w+", dtype=np.float32, shape=(n_rows, n_features)
)
y_file = np.lib.format.open_memmap(
    folder / "y.npy", mode="w+", dtype=np.float32, shape=(n_rows, 10)
)
# A stand-in for a network writing its activations batch by batch.
Z_all, y_all, _ = make_concept_activations(n_rows, n_features, random_state=0)
for start in range(0, n_rows, chunk):
    Z_file[start : start + chunk] = Z_all[start : start + chunk]
    y_file[start : start + chunk] = y_all[start : start + chunk]
Z_file.flush()
y_file.flush()
del Z_all, y_all, Z_file, y_file

Z = np.load(folder / "Z.npy", mmap_mode="r")  # nothing is read yet
y = np.load(folder / "y.npy", mmap_mode="r")
print(type(Z).__name__, Z.shape, Z.dtype)
train, test = slice(0, n_rows - chunk), slice(n_rows - chunk, n_rows)  # last chunk held out

# %%
# ``fit`` streams the memmap
# --------------------------
# With ``X`` above ``stream_threshold`` bytes, ``fit`` computes the rescaling in one
# streaming pass and reads each minibatch from disk; peak memory is bounded by the batch
# and the model, not by ``X``.
params = dict(
    n_components=5, hidden_layer_sizes=(128, 32), pretrain=3, batch_size=512, random_state=0
)
start_time = time.perf_counter()
xnn = SRAEExplainer(max_iter=10, stream_threshold=2**20, **params)
xnn.fit(Z[train], y[train])
print(f"fit (streamed): {time.perf_counter() - start_time:.1f} s")
print(f"held-out faithfulness R²: {xnn.score(Z[test], y[test]):.3f}")

# %%
# ``partial_fit``, one chunk at a time
# ------------------------------------
# The first call initialises the explainer from its chunk (so that chunk must be a
# representative sample); each call then runs one fine-tuning epoch over its chunk.
stream = SRAEExplainer(**params)
scores = []
start_time = time.perf_counter()
for n_pass in range(2):
    for start in range(0, n_rows - chunk, chunk):
        stream.partial_fit(Z[start : start + chunk], y[start : start + chunk])
        scores.append(stream.score(Z[test], y[test]))
    print(f"pass {n_pass + 1}: held-out faithfulness R² {scores[-1]:.3f}")
print(f"partial_fit: {time.perf_counter() - start_time:.1f} s")

# %%
# Transform chunk by chunk
# ------------------------
X = np.concatenate([xnn.transform(Z[s : s + chunk]) for s in range(0, n_rows, chunk)])
print("x-features:", X.shape, X.dtype)

fig, ax = plt.subplots(figsize=(4.5, 3))
ax.plot(range(1, len(scores) + 1), scores, "o-")
ax.set(xlabel="partial_fit calls (chunks of 10,000 rows)", ylabel="held-out faithfulness R²")
fig.tight_layout()
plt.show()

# %%
# The files are no longer needed: close the memmaps, then remove the folder.
del Z, y
tmp.cleanup()
