"""Node declarations of the classical ops: every param is documented, schemas export as JSON."""

from __future__ import annotations

import json

import pytest

from strata.workflow.node import REGISTRY, load_builtin_ops

load_builtin_ops()
CLASSICAL = sorted(op for op in REGISTRY if op.split(".")[0] in ("edit", "composite", "enhance"))


def test_all_classical_ops_are_registered() -> None:
    expected = {
        "edit.mask_rectangle", "edit.mask_ellipse", "edit.mask_polygon", "edit.mask_from_alpha",
        "edit.mask_color_range", "edit.mask_grow", "edit.mask_feather", "edit.mask_invert", "edit.mask_combine",
        "edit.crop", "edit.pad", "edit.resize", "edit.rotate", "edit.flip",
        "composite.blend", "composite.layers", "composite.text", "composite.drop_shadow",
        "enhance.exposure", "enhance.contrast", "enhance.saturation", "enhance.white_balance", "enhance.curves",
        "enhance.lut", "enhance.sharpen", "enhance.denoise", "enhance.upscale_lanczos",
    }
    assert expected <= set(CLASSICAL)


@pytest.mark.parametrize("op", CLASSICAL)
def test_schema_exports_and_every_param_has_a_description(op: str) -> None:
    spec = REGISTRY[op]
    schema = json.loads(json.dumps(spec.json_schema()))
    assert schema["layer"] == op.split(".")[0] and schema["version"] == 1 and schema["description"]
    for name, prop in schema["params"].get("properties", {}).items():
        # optional params (X | None) carry the description on their non-null branch
        described = prop.get("description") or any(branch.get("description") for branch in prop.get("anyOf", []))
        assert described, f"{op}: param {name!r} has no description"


def test_file_params_are_marked_for_cache_keys() -> None:
    assert REGISTRY["enhance.lut"].file_params == ("path",)
    assert REGISTRY["composite.text"].file_params == ("font",)
    assert [p.name for p in REGISTRY["edit.pad"].outputs] == ["image", "mask"]
