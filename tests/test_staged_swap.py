"""A staged folder whose final swap fails: the previous folder is put back whole and the staging folder goes."""

import errno
import os

import pytest

from quantlab import atomicio
from quantlab.atomicio import MARKER, staged_folder
from quantlab.errors import QuantlabError


def test_a_failed_swap_puts_the_previous_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with staged_folder(out, "test") as stage:
        (stage / "a.txt").write_text("first")
    real_rename = os.rename

    def rename_failing_the_swap(source, target):
        if os.path.basename(source).startswith(".out.staging-"):  # the new folder moving into place
            raise OSError(errno.EIO, "input/output error")
        real_rename(source, target)

    monkeypatch.setattr(atomicio.os, "rename", rename_failing_the_swap)
    with pytest.raises((OSError, QuantlabError)), staged_folder(out, "test") as stage:
        (stage / "a.txt").write_text("second")
    assert (out / "a.txt").read_text() == "first" and (out / MARKER).is_file()
    assert not [p.name for p in tmp_path.iterdir() if ".staging-" in p.name]
