"""Prompt lint: each known failure mode in many phrasings, and words that must not trigger it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from strata.lint import RULES, lint_prompt


def codes(prompt: str) -> list[str]:
    return [w.code for w in lint_prompt(prompt)]


@pytest.mark.parametrize("prompt", [
    "five apples on a table", "12 birds on a wire", "a bowl with seven oranges", "fourteen candles on a cake",
    "Twenty balloons", "a dozen eggs in a carton", "4 cats sleeping", "exactly 6 chairs around a table",
])
def test_exact_counts_above_three(prompt):
    assert codes(prompt) == ["exact-count"]


@pytest.mark.parametrize("prompt", [
    "three apples", "two dogs", "a 35mm photo of a fox", "4k, 8k uhd, highly detailed", "a 1990s car",
    "a 10 year old boy", "a 5-year-old girl", "a five-pointed star", "a 4-door sedan", "dozens of birds",
    "at 5:30 pm", "a portrait, f/1.8, 85mm", "50% gray", "the 4th of July", "a 1080p screenshot", "in 2024",
])
def test_numbers_that_are_not_counts(prompt):
    assert "exact-count" not in codes(prompt)


@pytest.mark.parametrize("prompt", [
    'a sign reading "OPEN"', "a neon sign that says Good Vibes", "a t-shirt which reads hello", "a poster saying STOP",
    "a cake with the text Happy Birthday", "a book cover with the words The End", 'a mug with "Dad" on it',
    "a logo spelling ACME", "a banner with the words welcome home", "“Hello world” written on a chalkboard",
    "graffiti lettering on a wall", "a plaque with an inscription",
])
def test_text_to_render(prompt):
    assert codes(prompt) == ["rendered-text"]


def test_a_cue_and_its_quoted_text_are_one_warning():
    (w,) = lint_prompt('a sign reading "OPEN" in a window')
    assert w.span == 'sign reading "OPEN"' and "composite.text" in w.suggestion


@pytest.mark.parametrize("prompt", [
    "a girl reading a book", "a knight's sword", "the artist's studio", "a bookstore window", "a quiet reading room",
])
def test_text_false_positives(prompt):
    assert "rendered-text" not in codes(prompt)


@pytest.mark.parametrize("prompt", [
    "a woman raising her hand", "close-up of hands playing piano", "a man with five fingers", "a clenched fist",
    "a person waving", "two people shaking hands", "a thumbs up", "a handshake between two robots",
    "a child pointing at the sky", "an open palm", "a couple holding hands", "a pianist's fingertips",
])
def test_hands(prompt):
    assert "hands" in codes(prompt)


@pytest.mark.parametrize("prompt", [
    "a knight in armor", "a leather handbag", "a handsome man in a suit", "a door handle", "a notebook",
    "a palm tree on a beach", "a hand-drawn map", "a hand painted vase", "handwriting on paper", "a handheld camera",
    "a secondhand bookshop", "palm leaves",
])
def test_hands_false_positives(prompt):
    assert "hands" not in codes(prompt)


@pytest.mark.parametrize("prompt", [
    "a red cube to the left of a blue sphere", "a cat on the right, a dog on the left", "a dog right of a car",
    "a cup on top of a book next to a lamp", "a cat behind a dog in front of a house",
    "a vase on a table between a lamp, a clock and a plant",
])
def test_complex_spatial_relations(prompt):
    assert "spatial-relation" in codes(prompt)


@pytest.mark.parametrize("prompt", ["a cat under a table", "a bird above the sea", "a house behind a tree",
                                    "a cat sitting on a sofa", "a lighthouse, dramatic sky"])
def test_simple_relations_pass(prompt):
    assert "spatial-relation" not in codes(prompt)


@pytest.mark.parametrize("prompt, thing", [
    ("a street with no cars", "cars"), ("a room without furniture", "furniture"), ("a beach, no people", "people"),
    ("a face not smiling", "smiling"), ("a forest free of fog", "fog"), ("a landscape without any buildings", "buildings"),
    ("don't show the sun", "sun"), ("a cake with no candles", "candles"),
])
def test_negations_name_what_belongs_in_the_negative_prompt(prompt, thing):
    (w,) = [w for w in lint_prompt(prompt) if w.code == "negation"]
    assert f'negative: "{thing}"' in w.suggestion


@pytest.mark.parametrize("prompt", ["a notebook on a desk", "a knight at night", "Noah's ark", "nobody's fool",
                                    "no one in sight", "not only red but blue", "a nomad in the desert", "snow"])
def test_negation_false_positives(prompt):
    assert "negation" not in codes(prompt)


def test_warnings_carry_offsets_and_come_in_prompt_order():
    prompt = "a street with no cars, five lamps and a sign reading 'EXIT', a man waving"
    found = lint_prompt(prompt)
    assert [w.code for w in found] == ["negation", "exact-count", "rendered-text", "hands"]
    for w in found:
        assert prompt[w.start:w.end].strip() == w.span
        assert w.message and w.suggestion
    assert set(RULES) == {"exact-count", "rendered-text", "hands", "spatial-relation", "negation"}


def test_clean_prompts_and_bad_input():
    assert lint_prompt("") == []
    assert lint_prompt("a red apple on a white background, studio light") == []
    with pytest.raises(TypeError, match="prompt must be a string"):
        lint_prompt(None)  # type: ignore[arg-type]


def test_lint_command():
    from strata.cli.main import app

    r = CliRunner().invoke(app, ["lint", "five cats without collars"])
    assert r.exit_code == 0 and "exact-count" in r.output and "negation" in r.output
    r = CliRunner().invoke(app, ["lint", "a red apple"])
    assert r.exit_code == 0 and "no known failure modes" in r.output
    r = CliRunner().invoke(app, ["lint", "a person waving", "--json"])
    assert r.exit_code == 0 and '"code": "hands"' in r.output
