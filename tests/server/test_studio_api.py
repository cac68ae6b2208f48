"""What the studio needs from the API: GET /api/ops/{op}/models (its voice list), the page's policy."""

from __future__ import annotations

from pathlib import Path

from server_helpers import fake_registry
from strata.models.registry import ModelEntry


def test_op_models_lists_installed_models_for_the_ops_capability(make_client, tmp_path: Path):
    registry = fake_registry(tmp_path)
    for name in ("voice-a", "voice-b"):
        registry.add(ModelEntry(name, {"speech"}, [tmp_path / "fake.safetensors"], loader=lambda files: object()))
    client = make_client(models=registry)
    assert client.get("/api/ops/sound.speech/models").json() == {
        "capability": "speech", "models": [{"id": "voice-a", "default": True}, {"id": "voice-b", "default": False}]}


def test_op_models_is_empty_when_nothing_is_installed_or_no_model_is_used(make_client, tmp_path: Path):
    client = make_client(models=fake_registry(tmp_path))
    assert client.get("/api/ops/sound.music/models").json() == {"capability": "music", "models": []}
    assert client.get("/api/ops/enhance.contrast/models").json() == {"capability": None, "models": []}


def test_op_models_of_an_unknown_op_is_a_404_with_a_suggestion(make_client, tmp_path: Path):
    response = make_client(models=fake_registry(tmp_path)).get("/api/ops/sound.speach/models")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_op" and "sound.speech" in response.json()["detail"]


def test_studio_page_lets_media_play_from_blob_urls_and_nothing_else(client):
    csp = client.get("/").headers["content-security-policy"]
    assert "media-src 'self' blob:;" in csp  # videos fetched with a token play from blob: URLs
    assert "default-src 'self';" in csp and "script-src 'self';" in csp
