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


def test_a_param_group_is_declared_once_and_merged_into_each_op() -> None:
    import inspect

    from strata.errors import StrataError
    from strata.workflow.node import node

    def group(*, prompt: str, steps: int = 20, seed: int = 0) -> None:
        """Shared params."""

    @node("test.group_user", layer="generate", params=group)
    def op(*, steps: int = 5, extra: float = 1.0, **shared: object) -> list:
        return [shared, steps, extra]

    spec = REGISTRY.pop("test.group_user")
    # The group's params first, in its order (the op's own `steps` replaces the group's), then the op's.
    assert spec.param_names == ["prompt", "steps", "seed", "extra"]
    assert spec.params_model(prompt="x").model_dump() == {"prompt": "x", "steps": 5, "seed": 0, "extra": 1.0}
    assert list(inspect.signature(op).parameters) == ["prompt", "steps", "seed", "extra"]
    # A direct call fills the defaults of both and refuses unknown or missing names.
    assert op(prompt="x", seed=3) == [{"prompt": "x", "seed": 3}, 5, 1.0]
    with pytest.raises(TypeError):
        op(prompt="x", stepz=3)
    with pytest.raises(TypeError):
        op(seed=3)
    # **kwargs without a group is still refused; so is an input named like a group param.
    with pytest.raises(StrataError, match="param group"):
        node("test.no_group", layer="generate")(lambda **kw: None)

    def clash(prompt: object, **shared: object) -> list:
        return []

    with pytest.raises(StrataError, match="input.s. prompt have the name of a param of its group"):
        node("test.clash", layer="generate", params=group)(clash)
    # Registering the same op again (a module imported twice) is fine.
    node("test.group_user", layer="generate", params=group)(op.__wrapped__)
    node("test.group_user", layer="generate", params=group)(op.__wrapped__)
    REGISTRY.pop("test.group_user")


def test_groups_after_the_first_come_after_the_ops_own_params() -> None:
    from strata.workflow.node import node

    def first(*, a: int = 1) -> None:
        """First group."""

    def last(*, z: int = 2) -> None:
        """Last group."""

    @node("test.two_groups", layer="generate", params=(first, last))
    def op(*, m: int = 0, **shared: object) -> list:
        return [shared, m]

    spec = REGISTRY.pop("test.two_groups")
    assert spec.param_names == ["a", "m", "z"] and op(z=5) == [{"a": 1, "z": 5}, 0]


def test_the_generation_ops_share_their_sampling_params() -> None:
    sampling = ["prompt", "negative", "count", "seed", "steps", "guidance", "sampler", "guidance_stop"]
    model = ["model", "lora", "precision", "attention_slicing"]
    for op, own in (("image.generate", ["size", "width", "height", "background"]),
                    ("image.variation", ["strength"]), ("image.inpaint", ["strength"])):
        assert REGISTRY[op].param_names == sampling + own + model, op  # the order forms show them in
    assert REGISTRY["image.generate"].params_model(prompt="x").count == 4  # its own default
    assert REGISTRY["image.variation"].params_model(prompt="x").count == 1
