"""The dataset generators and the small CNN helpers of ``sklearn_xnn.datasets``."""

import numpy as np
import pytest
import torch

from sklearn_xnn.datasets import (
    load_digits_activations,
    make_concept_activations,
    make_patch_images,
    train_digits_cnn,
    train_patch_cnn,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    """A few digit images and labels, (40, 1, 8, 8) float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:40] / 16.0).astype(np.float32)[:, None], d.target[:40]


@pytest.mark.parametrize("patch_size", range(1, 13))
@pytest.mark.parametrize("n_classes", [1, 2, 3, 4, 6, 8])
def test_every_accepted_patch_size_gives_distinct_half_on_textures(patch_size, n_classes):
    kw = dict(image_size=2 * patch_size, patch_size=patch_size, n_classes=n_classes)
    try:
        data = make_patch_images(3, random_state=0, **kw)
    except ValueError as err:
        assert "the smallest that works is" in str(err)
        return
    P = data.patterns.reshape(n_classes, -1)
    np.testing.assert_array_equal(P.sum(1), P.shape[1] / 2)  # exactly half on
    assert len(np.unique(P, axis=0)) == n_classes  # no two classes alike


@pytest.mark.parametrize("patch_size, n_classes", [(2, 3), (4, 4), (4, 8), (8, 6), (6, 3), (12, 5)])
def test_patch_sizes_that_can_hold_the_textures_are_accepted(patch_size, n_classes):
    data = make_patch_images(
        3, image_size=2 * patch_size, patch_size=patch_size, n_classes=n_classes, random_state=0
    )
    assert data.patterns.shape == (n_classes, patch_size, patch_size)


@pytest.mark.parametrize("patch_size, smallest", [(1, 4), (2, 4), (3, 4), (6, 4)])
def test_too_small_a_patch_names_the_smallest_that_works(patch_size, smallest):
    with pytest.raises(
        ValueError, match=f"patch_size={patch_size} .* smallest that works is {smallest}"
    ):
        make_patch_images(3, image_size=16, patch_size=patch_size, n_classes=6)


def test_without_a_distractor_the_patch_may_fill_the_image():
    data = make_patch_images(5, image_size=4, patch_size=4, distractor=None, random_state=0)
    assert data.images.shape == (5, 1, 4, 4)
    assert data.masks.all() and not data.distractor_masks.any()
    with pytest.raises(ValueError, match="two patches .* must fit side by side"):
        make_patch_images(5, image_size=4, patch_size=4, random_state=0)
    with pytest.raises(ValueError, match="patch_size=8 is too large for image_size=4"):
        make_patch_images(5, image_size=4, patch_size=8, distractor=None)


@pytest.mark.parametrize(
    "make, kw, name",
    [
        (make_concept_activations, dict(n_samples=True, n_features=8), "n_samples"),
        (make_concept_activations, dict(n_samples=10, n_features=True), "n_features"),
        (
            make_concept_activations,
            dict(n_samples=10, n_features=8, n_nuisance=False),
            "n_nuisance",
        ),
        (make_patch_images, dict(n_samples=True), "n_samples"),
        (make_patch_images, dict(n_samples=5, n_classes=True), "n_classes"),
    ],
)
def test_booleans_are_refused_as_sizes(make, kw, name):
    with pytest.raises(
        ValueError, match=f"'{name}' parameter .* must be an int .* Got (True|False)"
    ):
        make(**kw)


def test_digits_cnn_ignores_the_default_dtype(digits):
    images, labels = digits
    ref = train_digits_cnn(images, labels, epochs=1, batch_size=16, random_state=0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = train_digits_cnn(images, labels, epochs=1, batch_size=16, random_state=0)
        data = load_digits_activations(epochs=0, random_state=0)
    finally:
        torch.set_default_dtype(previous)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert data.Z_train.shape == (len(data.images_train), 64)
    assert np.isfinite(data.y_test).all()


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(epochs=-3), "epochs must be a non-negative int, got -3"),
        (dict(epochs=2.0), "epochs must be a non-negative int, got 2.0"),
        (dict(epochs=True), "epochs must be a non-negative int, got True"),
        (dict(batch_size=0), "batch_size must be a positive int, got 0"),
        (dict(batch_size=-1), "batch_size must be a positive int, got -1"),
    ],
)
@pytest.mark.parametrize("train", [train_digits_cnn, train_patch_cnn])
def test_cnn_training_refuses_bad_epochs_and_batch_sizes(digits, train, kw, message):
    images, labels = digits
    with pytest.raises(ValueError, match=message):
        train(images, labels, **kw)


def test_cnn_training_accepts_array_likes(digits):
    images, labels = digits
    ref = train_patch_cnn(images, labels, epochs=1, random_state=0)
    model = train_patch_cnn(images.tolist(), labels.tolist(), epochs=1, random_state=0)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    with pytest.raises(
        ValueError, match=r"images must have shape \(N, 1, S, S\), got shape \(40, 8, 8\)"
    ):
        train_patch_cnn(images[:, 0], labels, epochs=1)
    with pytest.raises(ValueError, match=r"labels must have shape \(40,\), got shape \(39,\)"):
        train_digits_cnn(images, labels[:-1], epochs=1)
