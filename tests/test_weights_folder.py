"""The shared weights folder (safetensors + JSON config): exact round trip, atomic files, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from strata.errors import ModelError
from strata.models.weights_folder import load_state, load_weights_folder, save_weights_folder


def test_round_trip_keeps_tensors_config_and_safetensors_metadata(tmp_path) -> None:
    from safetensors import safe_open

    state = {"a.weight": torch.arange(6, dtype=torch.float16).reshape(2, 3), "b": torch.ones(4)}
    path = save_weights_folder(tmp_path / "m", state, {"model": {"width": 3}, "note": "ü"}, tag="test-model")
    assert path == tmp_path / "m" / "model.safetensors"
    config, loaded, w_path = load_weights_folder(tmp_path / "m", what="test model", how_to_make="make one")
    assert w_path == path and config == {"model": {"width": 3}, "note": "ü"}
    assert {k: v.dtype for k, v in loaded.items()} == {"a.weight": torch.float32, "b": torch.float32}
    assert torch.equal(loaded["a.weight"], state["a.weight"].float())
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt", "strata": "test-model"}
        assert f.get_tensor("a.weight").dtype == torch.float16  # stored as given
    assert (tmp_path / "m" / "config.json").read_text(encoding="utf-8") == json.dumps(config, indent=2) + "\n"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]  # no temp files


def test_a_missing_file_names_both_and_how_to_make_them(tmp_path) -> None:
    save_weights_folder(tmp_path, {"x": torch.zeros(1)}, {}, tag="t")
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelError, match=r"no upscaler in .*: expected config.json and model.safetensors; run `x`"):
        load_weights_folder(tmp_path, what="upscaler", how_to_make="run `x`")


def test_load_state_needs_every_key_and_shape_but_the_tied_ones(tmp_path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    good = {k: torch.full_like(v, 0.5) for k, v in net.state_dict().items()}
    load_state(net, good, tmp_path / "w.safetensors")
    assert all(torch.all(v == 0.5) for v in net.state_dict().values())
    without = {k: v for k, v in good.items() if k != "1.bias"}
    with pytest.raises(ModelError, match=r"w.safetensors does not match its config: missing \['1.bias'\]"):
        load_state(net, without, tmp_path / "w.safetensors")
    load_state(net, without, tmp_path / "w.safetensors", tied=("1.bias",))  # e.g. a tied LM head
    with pytest.raises(ModelError, match=r"unexpected \['2.weight'\]"):
        load_state(net, {**good, "2.weight": torch.zeros(1)}, tmp_path / "w.safetensors")
    with pytest.raises(ModelError, match="size mismatch"):
        load_state(net, {**good, "0.weight": torch.zeros(5, 3)}, tmp_path / "w.safetensors")
