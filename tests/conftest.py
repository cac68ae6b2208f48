"""Suite-wide isolation: tests never touch the user's config (signing identity) or store."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_dirs(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("strata-home")
    mp.setenv("STRATA_CONFIG", str(home / "config"))  # local signing identity is created here
    mp.setenv("STRATA_DATA", str(home / "store"))
    yield
    mp.undo()
