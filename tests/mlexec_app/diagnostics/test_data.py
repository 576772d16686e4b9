"""Dataset loading for the diagnostics: CSV, NPZ, a torch Dataset, the bundled digits."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from mlexec_app.diagnostics.data import load_dataset
from mlexec_app.diagnostics.exceptions import DatasetError, TorchMissing
from mlexec_app.diagnostics.runtime import require

pytestmark = pytest.mark.engine_independent


def test_digits_demo_is_bundled_images():
    data = load_dataset("digits")
    assert data.X.shape == (1797, 64) and data.image_shape == (1, 8, 8)
    assert data.classes == [str(i) for i in range(10)]
    assert data.X.max() == 16


def test_csv_with_text_labels_one_hot_columns_and_a_slice_column(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text("income,region,label\n10,north,no\n20,south,yes\n30,north,yes\n40,south,no\n")
    data = load_dataset(str(path), slice_column="region")
    assert data.classes == ["no", "yes"]
    assert list(data.y) == [0, 1, 1, 0]
    assert data.feature_names == ["income"]  # the text slice column is not a feature
    assert list(data.slices) == ["north", "south", "north", "south"]


def test_csv_text_feature_columns_are_one_hot_encoded(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("colour,weight,label\nred,1,a\nblue,2,b\nred,3,a\nblue,4,b\n")
    data = load_dataset(str(path))
    assert data.feature_names == ["colour=blue", "colour=red", "weight"]
    assert data.X[0].tolist() == [0.0, 1.0, 1.0]


def test_csv_without_the_label_column_says_which_columns_exist(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DatasetError, match="no label column 'label'; columns: a, b"):
        load_dataset(str(path))


def test_npz_images_keep_their_shape_and_class_names(tmp_path):
    path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.random((12, 5, 5)), y=np.repeat([3, 7], 6), classes=np.array(["t", "s"]))
    data = load_dataset(str(path))
    assert data.X.shape == (12, 25) and data.image_shape == (1, 5, 5)
    assert data.classes == ["t", "s"] and set(data.y) == {0, 1}


class TinyDataset:
    classes = ["even", "odd"]

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return np.full(3, float(i)), i % 2


def test_torch_style_dataset_by_dotted_path():
    data = load_dataset(f"{__name__}.TinyDataset")
    assert data.X.shape == (10, 3) and data.classes == ["even", "odd"]
    assert list(data.y[:4]) == [0, 1, 0, 1]


def test_unknown_dataset_explains_the_choices():
    with pytest.raises(DatasetError, match="use 'digits', a .csv or .npz file"):
        load_dataset("data/somewhere")


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(TorchMissing, match=r"django-ai-stack\[mlexec\]") as info:
        require("torch")
    assert isinstance(info.value, ImproperlyConfigured)
