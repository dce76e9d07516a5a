"""A small real CNN trained on scikit-learn's embedded digits (nothing is downloaded)."""

from numbers import Integral

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state
from torch import nn


class SmallCNN(nn.Module):
    """``conv -> ReLU -> conv -> ReLU -> maxpool -> fc -> ReLU -> fc`` for square 1-channel images.

    The layers are float32 whatever :func:`torch.get_default_dtype` says.

    Named layers: ``conv1``, ``relu1``, ``conv2``, ``relu2``, ``pool``, ``flatten``, ``fc1``
    (its ReLU output is ``relu_fc1``), ``fc2``; :class:`DigitsCNN` and
    :class:`~sklearn_xnn.datasets.PatchCNN` are its two sizes.
    """

    def __init__(self, image_size, n_classes, width, hidden):
        super().__init__()
        f32 = {"dtype": torch.float32}  # whatever torch's default dtype is
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, **f32)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, **f32)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * width * (image_size // 2) ** 2, hidden, **f32)
        self.relu_fc1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, n_classes, **f32)

    def features(self, x):
        """Activations of ``relu_fc1`` (the layer explained by default)."""
        h = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.relu_fc1(self.fc1(self.flatten(h)))

    def forward(self, x):
        return self.fc2(self.features(x))


class DigitsCNN(SmallCNN):
    """A small CNN for 8x8 digits.

    ``conv(1->16) -> ReLU -> conv(16->32) -> ReLU -> maxpool -> fc(512->64) -> ReLU -> fc(64->10)``.
    Named layers: ``conv1``, ``conv2``, ``pool``, ``fc1`` (its ReLU output is ``relu_fc1``),
    ``fc2``.
    """

    def __init__(self, width=16, hidden=64):
        super().__init__(8, 10, width, hidden)


def train_digits_cnn(images, labels, *, epochs=30, batch_size=64, random_state=None):
    """Train :class:`DigitsCNN` on ``images`` (N, 1, 8, 8) in [0, 1]; returns it in eval mode.

    ``images`` and ``labels`` may be any array-likes; ``epochs`` (0 leaves the model
    untrained) and ``batch_size`` are ints, else a ValueError is raised.
    """
    return train_classifier(DigitsCNN, images, labels, epochs, batch_size, 2e-3, random_state)


def check_training_input(images, labels, epochs, batch_size):
    """``images`` (N, C, H, W) and ``labels`` (N,) as arrays; a clear error for bad arguments."""
    for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
            kind = "non-negative" if low == 0 else "positive"
            raise ValueError(f"{name} must be a {kind} int, got {value!r}.")
    images, labels = np.asarray(images, dtype=np.float32), np.asarray(labels)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, 1, S, S), got shape {images.shape}.")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape ({len(images)},), got shape {labels.shape}.")
    return images, labels


def train_classifier(make_model, images, labels, epochs, batch_size, lr, random_state):
    """Cross-entropy training of ``make_model()`` with Adam; randomness from ``random_state`` only.

    The layer initialisation runs inside a forked RNG (the caller's global state is left
    untouched) and the shuffling uses a local generator. The images are cast to the
    model's dtype.
    """
    images, labels = check_training_input(images, labels, epochs, batch_size)
    seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    X = torch.as_tensor(images, dtype=next(model.parameters()).dtype)
    y = torch.as_tensor(labels, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(batch_size):
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def split_digit_images(test_size, random_state):
    """scikit-learn's digits as (n, 1, 8, 8) images in [0, 1], split stratified by label.

    Returns ``images_train, images_test, labels_train, labels_test``.
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(
        images,
        digits.target,
        test_size=test_size,
        stratify=digits.target,
        random_state=random_state,
    )


def load_digits_activations(*, test_size=0.3, epochs=30, random_state=0):
    """Train a small CNN on scikit-learn's digits and return its ``fc1`` activations and logits.

    The 8x8 digit images ship with scikit-learn. The CNN reaches about 97-99% held-out
    accuracy after ~10 s of CPU training. The explained layer is the 64-unit ReLU
    output of ``fc1``; the logits are the 10 outputs of ``fc2``.

    Parameters
    ----------
    test_size : float, default=0.3
        Fraction of images held out (stratified).
    epochs : int, default=30
        Training epochs of the CNN.
    random_state : int, default=0
        Seed of the split, the initialisation and the shuffling.

    Returns
    -------
    data : Bunch
        ``Z_train, Z_test`` (n, 64) activations, ``y_train, y_test`` (n, 10) logits,
        ``images_train, images_test`` (n, 1, 8, 8), ``labels_train, labels_test``,
        ``model`` (the trained :class:`DigitsCNN`), ``layer`` ("relu_fc1") and
        ``accuracy`` (held-out accuracy of the CNN).
    """
    if not isinstance(epochs, Integral) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}.")
    im_tr, im_te, lab_tr, lab_te = split_digit_images(test_size, random_state)
    model = train_digits_cnn(im_tr, lab_tr, epochs=epochs, random_state=random_state)
    with torch.no_grad():
        out = {}
        for name, ims in (("train", im_tr), ("test", im_te)):
            x = torch.as_tensor(ims, dtype=torch.float32)
            out[f"Z_{name}"] = model.features(x).numpy().astype(np.float64)
            out[f"y_{name}"] = model(x).numpy().astype(np.float64)
    accuracy = float((out["y_test"].argmax(1) == lab_te).mean())
    return Bunch(
        **out,
        images_train=im_tr,
        images_test=im_te,
        labels_train=lab_tr,
        labels_test=lab_te,
        model=model,
        layer="relu_fc1",
        accuracy=accuracy,
    )
