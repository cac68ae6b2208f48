"""Suite-wide isolation: tests never touch the user's config (signing identity), store or cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_dirs(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("strata-home")
    mp.setenv("STRATA_CONFIG", str(home / "config"))  # local signing identity is created here
    mp.setenv("STRATA_DATA", str(home / "store"))
    mp.setenv("STRATA_CACHE", str(home / "cache"))  # voice graphs, exported UNets: made once per test session
    yield
    mp.undo()


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one torch thread avoids OpenMP spin-waits that make them 10× slower on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
