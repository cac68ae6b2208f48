"""Bias audit scaffolding: tone measurement on known colours, distributions, report, chart, CLI.

No model is trained yet, so the audit runs here on a stub generator: these tests check the
machinery, not any model's numbers.
"""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from skimage.color import lab2rgb
from typer.testing import CliRunner

from strata.errors import MediaError, ModelError
from strata.media.image import Image
from strata.provenance.audit import (
    BINS,
    NO_SKIN,
    ita_degrees,
    ita_to_bin,
    measure_tone,
    run_audit,
    total_variation,
    training_distribution,
)

# One CIELAB colour inside each ITA category (Del Bino & Bernerd 2013), with its exact ITA°.
REFERENCE = [  # (L*, a*, b*), bin
    ((85.0, 6.0, 15.0), "I-II"),   # very light, ITA 66.8°
    ((70.0, 9.0, 17.0), "I-II"),   # light, ITA 49.6°
    ((63.0, 11.0, 19.0), "III"),   # intermediate, ITA 34.4°
    ((58.0, 12.0, 24.0), "IV"),    # tan, ITA 18.4°
    ((45.0, 14.0, 24.0), "V"),     # brown, ITA -11.8°
    ((30.0, 11.0, 14.0), "VI"),    # dark, ITA -55.0°
]


def patch(lab: tuple[float, float, float], side: int = 24, alpha: float = 1.0) -> Image:
    rgb = lab2rgb(np.array(lab, np.float64).reshape(1, 1, 3))[0, 0]
    pixels = np.ones((side, side, 4), np.float32)
    pixels[:, :, :3] = rgb
    pixels[:, :, 3] = alpha
    return Image(pixels)


@pytest.mark.parametrize("lab, expected", REFERENCE)
def test_tone_of_reference_patches_matches_the_ita_formula(lab, expected):
    m = measure_tone(patch(lab))
    exact = np.degrees(np.arctan((lab[0] - 50.0) / lab[2]))
    assert m.bin == expected and m.ita == pytest.approx(exact, abs=1.0)  # 8-bit quantisation of the patch
    assert m.skin_fraction == 1.0


def test_emoji_modifier_swatches_get_darker_monotonically():
    # Unicode's Fitzpatrick modifier swatches 1-2, 3, 4, 5, 6 (approximate sRGB)
    swatches = ["F7D7C4", "D8B094", "BB9167", "8E562E", "613D30"]
    itas = []
    for hexc in swatches:
        rgb = np.array([int(hexc[i:i + 2], 16) for i in (0, 2, 4)], np.uint8)
        itas.append(measure_tone(Image.from_array(np.broadcast_to(rgb, (16, 16, 3)).copy())).ita)
    assert itas == sorted(itas, reverse=True)
    assert [ita_to_bin(i) for i in (itas[0], itas[-1])] == ["I-II", "VI"]


def test_non_skin_and_transparent_pixels_are_not_skin():
    yellow = Image.from_array(np.full((16, 16, 3), (255, 200, 61), np.uint8))  # default emoji yellow
    assert measure_tone(yellow).bin == NO_SKIN
    assert measure_tone(Image.from_array(np.full((16, 16, 3), (40, 90, 200), np.uint8))).bin == NO_SKIN
    assert measure_tone(patch(REFERENCE[2][0], alpha=0.0)).bin == NO_SKIN
    assert ita_degrees(np.array([50.0, 0.0, 10.0])) == pytest.approx(0.0)
    with pytest.raises(MediaError, match="needs an Image"):
        measure_tone(np.zeros((4, 4, 3)))  # type: ignore[arg-type]


def fake_dataset(folder):
    folder.mkdir()
    tones = ["light skin tone", "medium skin tone", "dark skin tone", None, None]
    rows = [{"source": "noto", "group": "g1" if t or i == 3 else "apple", "skin_tone": t, "name": "x"}
            for i, t in enumerate(tones)]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    labs = [REFERENCE[0][0], REFERENCE[3][0], REFERENCE[5][0]]
    images = [np.dstack([np.rint(lab2rgb(np.array(lab).reshape(1, 1, 3))[0, 0] * 255).astype(np.uint8)
                         * np.ones((8, 8, 1), np.uint8), np.full((8, 8), 255, np.uint8)]) for lab in labs]
    images += [np.full((8, 8, 4), (255, 200, 61, 255), np.uint8)] * 2
    np.savez(folder / "images.npz", images=np.stack(images))
    return folder


def test_training_distribution_from_labels_and_measured(tmp_path):
    train = training_distribution(fake_dataset(tmp_path / "emoji"))
    assert train["shares"] == {"I-II": 1 / 3, "III": 0.0, "IV": 1 / 3, "V": 0.0, "VI": 1 / 3}
    assert train["untoned_person_emoji"] == 1 and train["person_emoji"] == 4  # "apple" is not a person group
    assert train["measured_counts"] == {"I-II": 1, "III": 0, "IV": 1, "V": 0, "VI": 1, NO_SKIN: 1}
    assert train["label_agreement"] == 1.0
    assert training_distribution(tmp_path / "missing") is None


def test_audit_with_a_stub_generator_writes_report_and_chart(tmp_path):
    calls = []

    def stub(prompt: str, count: int, seed: int) -> list[Image]:
        calls.append((prompt, count, seed))
        return [patch(REFERENCE[0][0])] * (count - 1) + [patch(REFERENCE[5][0])]

    report = run_audit(n_per_prompt=4, out_dir=tmp_path / "audit", seed=7, generator=stub, prompts=["a doctor", "a farmer"],
                       dataset=fake_dataset(tmp_path / "emoji"))
    assert calls == [("a doctor", 4, 7), ("a farmer", 4, 7)]
    assert report.per_prompt["a doctor"]["counts"] == {"I-II": 3, "III": 0, "IV": 0, "V": 0, "VI": 1}
    assert report.generated["I-II"] == 0.75 and report.generated["VI"] == 0.25
    assert report.tv_to_uniform == pytest.approx(total_variation(report.generated, {b: 0.2 for b in BINS}))
    assert report.tv_to_uniform == pytest.approx(0.5 * (0.55 + 0.2 + 0.2 + 0.2 + 0.05))
    assert report.tv_to_training == pytest.approx(0.5 * (abs(0.75 - 1 / 3) + 1 / 3 + abs(0.25 - 1 / 3)))
    data = json.loads(report.json_path.read_text())
    assert data["generated"] == report.generated and data["n_per_prompt"] == 4
    with PIL.Image.open(report.chart_path) as chart:
        assert chart.size == (720, 420) and chart.format == "PNG"
    assert "total variation distance to uniform" in report.summary()


def test_bad_generators_and_the_missing_model(tmp_path, monkeypatch):
    with pytest.raises(MediaError, match="it must return Images"):
        run_audit(n_per_prompt=1, out_dir=tmp_path, generator=lambda p, n, s: [np.zeros((4, 4, 3))], prompts=["a"])

    def no_model(prompt: str, count: int, seed: int) -> list[Image]:
        raise ModelError("`strata audit` needs the built-in text-to-image model, which could not run (no weights)")

    import strata.provenance.audit as audit

    monkeypatch.setattr(audit, "builtin_generator", lambda store_dir=None: no_model)
    from strata.cli.main import app

    r = CliRunner().invoke(app, ["audit", "--n", "2", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "needs the built-in text-to-image model" in " ".join(r.output.split())
