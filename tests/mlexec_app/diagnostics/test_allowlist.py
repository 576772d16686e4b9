"""The allow-list alone: which names and relative paths resolve, and that refusals look alike."""

from __future__ import annotations

import os

import pytest

from mlexec_app.diagnostics.allowlist import (
    NotAllowed,
    resolve_data_file,
    resolve_dataset,
    resolve_factory,
)

pytestmark = pytest.mark.engine_independent


@pytest.fixture
def root(tmp_path):
    inside = tmp_path / "root"
    (inside / "sub").mkdir(parents=True)
    (inside / "sub" / "a.csv").write_text("x,label\n")
    (tmp_path / "outside.csv").write_text("x,label\n")
    (inside / "out.csv").symlink_to(tmp_path / "outside.csv")
    (inside / "loop.csv").symlink_to(inside / "loop.csv")
    (inside / "dir.csv").mkdir()
    return inside


def test_a_relative_file_inside_resolves(root):
    assert resolve_data_file("sub/a.csv", root) == (root / "sub" / "a.csv").resolve()
    assert resolve_data_file("./sub//a.csv", root) == (root / "sub" / "a.csv").resolve()


@pytest.mark.parametrize(
    "name",
    ["", "../outside.csv", "sub/../../outside.csv", "/etc/passwd", "out.csv", "loop.csv",
     "dir.csv", "missing.csv", "sub\\a.csv", "C:a.csv", "a\x00.csv", "x" * 600 + ".csv"],
)  # fmt: skip
def test_anything_else_is_none(root, name):
    assert resolve_data_file(name, root) is None


def test_a_missing_root_allows_nothing(tmp_path):
    assert resolve_data_file("a.csv", tmp_path / "absent") is None


def test_missing_and_forbidden_datasets_get_the_same_message(root):
    messages = set()
    for name in ("missing.csv", "out.csv"):
        with pytest.raises(NotAllowed) as info:
            resolve_dataset(name, registered={"digits": "digits"}, data_root=root)
        assert info.value.code == "dataset_not_allowed"
        messages.add(str(info.value).replace(repr(name), "X"))
    assert len(messages) == 1


def test_registered_names_win_and_dotted_paths_do_not_pass(root):
    registered = {"digits": "digits", "pets": "/srv/pets.csv"}
    assert resolve_dataset("pets", registered=registered, data_root=None) == "/srv/pets.csv"
    with pytest.raises(NotAllowed):
        resolve_dataset("os.getpid", registered=registered, data_root=root)
    assert resolve_factory("r", registered={"r": "m.f"}) == "m.f"
    with pytest.raises(NotAllowed) as info:
        resolve_factory("m.f", registered={"r": "m.f"})
    assert info.value.code == "factory_not_allowed"


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_a_symlink_that_stays_inside_is_fine(root):
    (root / "alias.csv").symlink_to(root / "sub" / "a.csv")
    assert resolve_data_file("alias.csv", root) == (root / "sub" / "a.csv").resolve()
