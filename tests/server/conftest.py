"""Fixtures for server tests: started apps on a temp store (see server_helpers for the rest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from server_helpers import BASE
from strata.server import ServerConfig, create_app
from strata.store import Store


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def make_client(store_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**config)`` → a started TestClient on the store (closed at teardown)."""
    opened: list[TestClient] = []

    def make(*, token: str | None = None, start_workers: bool = True, models: Any = None,
             generators: Any = None, **config: Any) -> TestClient:
        config.setdefault("poll_s", 0.05)
        config.setdefault("heartbeat_s", 0.05)
        app = create_app(Store(store_dir), token=token, config=ServerConfig(**config), models=models,
                         generators=generators, start_workers=start_workers)
        client = TestClient(app, base_url=BASE)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
