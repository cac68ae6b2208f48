"""The music model: grammar-constrained generation, cadence, exact length, determinism, errors,
the save/load round trip, and the trainer (a few steps on a handful of chorales; resume = straight run)."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter

import numpy as np
import pretty_midi
import pytest
import torch

from strata.errors import ModelError, OpError
from strata.models.music_generate import (
    Grammar,
    cadence_plan,
    fit_bars,
    generate_tokens,
    in_key_fraction,
    parse_key,
    scale_of,
)
from strata.models.music_model import MusicModel, MusicModelConfig
from strata.models.music_tokens import STEPS_PER_BAR, TOKEN_ID, VOCAB, decode, encode
from strata.ops.sound import instrument_programs, music
from strata.workflow.node import REGISTRY

TINY = MusicModelConfig(n_layer=1, n_head=2, n_embd=32, n_positions=256, dropout=0.0)


@pytest.fixture(scope="module")
def tiny() -> MusicModel:
    torch.set_num_threads(1)
    return MusicModel.random(TINY, seed=0)


class UniformModel:
    """Equal logits for every token: sampling is uniform over what the grammar allows."""

    cfg = TINY

    def logits(self, ids, past=None):
        return torch.zeros(len(VOCAB)), None


def check_piece(tokens: list[int], n_bars: int) -> list:
    """Assert the structural guarantees of generated tokens; return the notes."""
    assert tokens[0] == TOKEN_ID["BOS"] and tokens[-1] == TOKEN_ID["EOS"]
    assert tokens.count(TOKEN_ID["BAR"]) == n_bars
    notes, key = decode(tokens)
    # The grammar emits the canonical order, so re-encoding the decoded notes gives the same tokens.
    assert encode(notes, tonic=key[0], mode=key[1]) == tokens
    for v in range(4):
        line = sorted(n for n in notes if n.voice == v)
        assert all(a.start + a.dur <= b.start for a, b in zip(line, line[1:]))  # monophonic voices
    assert max(n.start + n.dur for n in notes) == n_bars * STEPS_PER_BAR  # the final chord fills the last bar
    return notes


def check_cadence(notes: list, n_bars: int, tonic: int, mode: str) -> None:
    end = (n_bars - 1) * STEPS_PER_BAR
    final = sorted((n for n in notes if n.start == end), key=lambda n: n.voice)
    third = (tonic + (4 if mode == "maj" else 3)) % 12
    assert [n.voice for n in final] == [0, 1, 2, 3] and all(n.dur == STEPS_PER_BAR for n in final)
    assert final[3].pitch % 12 == tonic  # root position
    assert {n.pitch % 12 for n in final} <= {tonic, third, (tonic + 7) % 12}
    assert third in {n.pitch % 12 for n in final}  # the chord states the mode
    if n_bars >= 2:
        bass = [n for n in notes if n.voice == 3 and n.start == end - 4]
        assert len(bass) == 1 and bass[0].pitch % 12 == (tonic + 7) % 12 and bass[0].dur == 4


@pytest.mark.parametrize("seed", range(24))
def test_grammar_holds_for_any_choice_of_allowed_tokens(seed):
    tonic, mode, n_bars = seed % 12, ("maj", "min")[seed % 2], 1 + seed % 5
    tokens = generate_tokens(UniformModel(), tonic=tonic, mode=mode, n_bars=n_bars, seed=seed, temperature=1.0, top_p=1.0)
    check_cadence(check_piece(tokens, n_bars), n_bars, tonic, mode)


def test_without_cadence_nothing_sounds_past_the_last_bar():
    for seed in range(8):
        tokens = generate_tokens(UniformModel(), tonic=3, mode="min", n_bars=3, seed=seed, cadence=False, top_p=1.0)
        notes, _ = decode(tokens)
        assert tokens[-1] == TOKEN_ID["EOS"] and tokens.count(TOKEN_ID["BAR"]) == 3
        assert all(n.start + n.dur <= 3 * STEPS_PER_BAR for n in notes)


def test_sampling_follows_temperature_and_nucleus():
    from strata.models.music_generate import sample

    logits = torch.full((len(VOCAB),), 9.0)  # high logits on tokens the grammar forbids: never drawn
    logits[[5, 6, 7]] = torch.log(torch.tensor([1.0, 2.0, 4.0]))
    g = torch.Generator().manual_seed(0)

    def freq(**kw) -> np.ndarray:
        draws = Counter(sample(logits, [5, 6, 7], generator=g, **kw) for _ in range(4000))
        return np.array([draws[t] for t in (5, 6, 7)]) / 4000

    assert np.allclose(freq(temperature=1.0, top_p=1.0), [1 / 7, 2 / 7, 4 / 7], atol=0.03)
    assert np.allclose(freq(temperature=2.0, top_p=1.0), np.sqrt([1, 2, 4]) / np.sqrt([1, 2, 4]).sum(), atol=0.03)
    assert np.allclose(freq(temperature=1.0, top_p=0.5), [0, 0, 1])  # 4/7 already covers half
    assert np.allclose(freq(temperature=1.0, top_p=0.6), [0, 1 / 3, 2 / 3], atol=0.03)  # 4/7 < 0.6: two kept


def test_grammar_refuses_a_token_it_does_not_allow():
    g = Grammar(2)
    with pytest.raises(OpError, match="breaks the music grammar"):
        g.feed(TOKEN_ID["POS_0"])  # a BAR must come first


def test_cadence_plan_is_v_to_i():
    anchors, required = cadence_plan(4, tonic=9, mode="min")  # A minor
    final = {a.voice: a for a in anchors if a.step == 48}
    assert final[3].pcs == {9} and final[0].pcs == {9, 0, 4} and required == {48: {9, 0}}
    assert [(a.step, a.voice, a.pcs, a.dur) for a in anchors if a.step == 44] == [(44, 3, frozenset({4}), 4)]


def test_tiny_transformer_generation_is_grammatical_and_seeded(tiny):
    runs = [generate_tokens(tiny, tonic=7, mode="maj", n_bars=5, seed=s) for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    check_cadence(check_piece(runs[0], 5), 5, 7, "maj")


class CountingModel(UniformModel):
    """Uniform, and it tracks how long the context it is given has grown."""

    def __init__(self):
        self.context, self.longest, self.reprimes = 0, 0, []

    def logits(self, ids, past=None):
        self.context = ids.shape[1] + (self.context if past is not None else 0)
        self.longest = max(self.longest, self.context)
        if past is None and self.context > 2:
            self.reprimes.append(ids[0].tolist())
        return torch.zeros(len(VOCAB)), "cache"


def test_long_pieces_slide_the_context_window(tiny):
    counting = CountingModel()
    tokens = generate_tokens(counting, tonic=0, mode="maj", n_bars=40, seed=0, top_p=1.0)
    check_piece(tokens, 40)
    assert len(tokens) > TINY.n_positions and counting.longest <= TINY.n_positions
    assert counting.reprimes and all(r[:3] == [TOKEN_ID["BOS"], TOKEN_ID["KEY_0_maj"], TOKEN_ID["BAR"]]
                                     and len(r) <= TINY.n_positions // 2 + 2 for r in counting.reprimes)
    check_piece(generate_tokens(tiny, tonic=0, mode="maj", n_bars=30, seed=0), 30)


def test_fit_bars_fills_the_duration_exactly():
    for duration, tempo in [(30.0, 90.0), (7.3, 120.0), (61.0, 72.0), (2.0, 200.0)]:
        bars, fitted, release = fit_bars(duration, tempo)
        assert bars * 4 * 60 / fitted + release == pytest.approx(duration, abs=1e-9)
        assert release == min(1.0, duration / 8) and bars >= 1
        assert abs(bars - (duration - release) * tempo / 240) <= 0.5  # nearest whole number of bars


def test_music_op_has_exact_length_instruments_and_same_bytes_for_same_seed(tiny):
    out = music(key="Eb", mode="minor", duration_s=7.3, tempo_bpm=100, seed=3, instruments=["Flute", "oboe", 41, "Cello"],
                loaded_model=tiny, sample_rate_hz=44100)
    audio, midi = out["audio"], out["midi"]
    assert audio.samples.shape == (2, round(7.3 * 44100)) and audio.sample_rate_hz == 44100
    assert np.abs(audio.samples[:, -1]).max() == 0  # faded to silence at the exact end
    assert np.abs(audio.samples).max() > 0.01
    pm = midi.parse()
    assert [i.program for i in pm.instruments] == [73, 68, 41, 42]
    bars, tempo, release = fit_bars(7.3, 100)
    assert pm.get_end_time() == pytest.approx(7.3 - release, abs=0.01)  # the last chord ends where the release begins
    again = music(key="D#", mode="minor", duration_s=7.3, tempo_bpm=100, seed=3, instruments=["Flute", "oboe", 41, "Cello"],
                  loaded_model=tiny, sample_rate_hz=44100)
    assert again["midi"].data == midi.data
    assert hashlib.sha256(again["audio"].samples.tobytes()).digest() == hashlib.sha256(audio.samples.tobytes()).digest()
    other = music(key="Eb", mode="minor", duration_s=7.3, tempo_bpm=100, seed=4, loaded_model=tiny)
    assert other["midi"].data != midi.data


def test_music_in_bars_lasts_bars_plus_release(tiny):
    out = music(bars=3, tempo_bpm=120, instruments=["acoustic grand piano"], loaded_model=tiny, seed=0)
    assert instrument_programs(["Choir Aahs", "52", 52, "CHOIR AAHS"]) == [52] * 4
    assert out["audio"].samples.shape[1] == round((3 * 2.0 + 1.0) * 48000)
    pm = pretty_midi.PrettyMIDI(io.BytesIO(out["midi"].data))
    assert [i.program for i in pm.instruments] == [0, 0, 0, 0]


def test_bad_music_controls_fail_clearly(tiny):
    cases = [({"duration_s": 0}, "duration_s"), ({"duration_s": -3}, "duration_s"), ({"bars": 0}, "bars"),
             ({"key": "H"}, "unknown key"), ({"mode": "dorian"}, "unknown mode"),
             ({"instruments": ["kazoo"]}, "unknown instrument"), ({"instruments": [200]}, "0–127"),
             ({"instruments": ["Violin", "Viola"]}, "1 or 4 instruments"),
             ({"duration_s": 10, "bars": 4}, "not both"), ({"top_p": 0}, "top_p"), ({"duration_s": 0.2, "tempo_bpm": 30}, "cannot hold")]
    for params, message in cases:
        with pytest.raises(OpError, match=message):
            music(loaded_model=tiny, **params)
    schema = REGISTRY["sound.music"].params_model
    for bad in ({"duration_s": 0}, {"bars": -1}, {"mode": "lydian"}, {"tempo_bpm": 500}):
        with pytest.raises(Exception, match=next(iter(bad))):
            schema(**bad)


def test_no_installed_model_says_how_to_train_one(tmp_path, monkeypatch):
    from strata.models.registry import reset_default_registry

    monkeypatch.setenv("STRATA_MUSIC_MODEL", str(tmp_path / "none"))
    reset_default_registry()
    try:
        with pytest.raises(ModelError, match="strata train music"):
            music(bars=2)
    finally:
        reset_default_registry()


def test_key_names_and_in_key_measure():
    assert parse_key("F#", "major") == (6, "maj") and parse_key("bb", "minor") == (10, "min")
    assert scale_of(0, "maj") == {0, 2, 4, 5, 7, 9, 11}
    assert scale_of(9, "min") == {9, 11, 0, 2, 4, 5, 7, 6, 8}  # A natural + F#, G# (melodic, harmonic)
    from strata.models.music_tokens import Note

    notes = [Note(0, 0, 60, 4), Note(0, 1, 61, 4), Note(4, 0, 62, 4), Note(4, 1, 64, 4)]
    assert in_key_fraction(notes, 0, "maj") == 0.75


def test_save_and_load_round_trip_through_the_registry(tiny, tmp_path, monkeypatch):
    from strata.models.registry import reset_default_registry

    path = tiny.save_pretrained(tmp_path / "m", extra={"training": {"step": 0}})
    loaded = MusicModel.from_pretrained(tmp_path / "m")
    assert loaded.cfg == tiny.cfg and loaded.info == {"training": {"step": 0}}
    assert path.stat().st_size < 2 * sum(p.numel() for p in tiny.net.parameters()) + 4096  # fp16, tied weights once
    ids = torch.tensor([[TOKEN_ID["BOS"], TOKEN_ID["KEY_0_maj"], TOKEN_ID["BAR"]]])
    ref = MusicModel.random(TINY, seed=0)  # the same weights rounded to fp16, computed in fp32
    with torch.no_grad():
        for p in ref.net.parameters():
            p.copy_(p.half().float())
    assert torch.allclose(loaded.logits(ids)[0], ref.logits(ids)[0], atol=1e-5)
    monkeypatch.setenv("STRATA_MUSIC_MODEL", str(tmp_path / "m"))
    reset_default_registry()
    try:
        out = music(bars=2, seed=5)  # found through the registry (builtin registrar)
        assert out["midi"].data == music(bars=2, seed=5, loaded_model=loaded)["midi"].data
    finally:
        reset_default_registry()


def test_music_through_the_engine_writes_wav_and_midi_with_provenance(tiny, tmp_path, monkeypatch):
    from strata.models.registry import default_registry, reset_default_registry
    from strata.store import Store
    from strata.workflow.events import CollectSink, NodeProgress
    from strata.workflow.executor import Executor
    from strata.workflow.spec import parse_workflow

    tiny.save_pretrained(tmp_path / "m")
    monkeypatch.setenv("STRATA_MUSIC_MODEL", str(tmp_path / "m"))
    reset_default_registry()
    try:
        wf = {"name": "tune", "seed": 4, "nodes": [{"id": "tune", "op": "sound.music",
                                                     "params": {"key": "A", "mode": "minor", "duration_s": 5.0}}],
              "outputs": {"tune.wav": "tune.audio", "tune.mid": "tune.midi"}}
        sink, store = CollectSink(), Store(tmp_path / "store")
        result = Executor(store, sinks=[sink], models=default_registry()).run(parse_workflow(wf), out_dir=tmp_path / "out")
        assert result.ok, result.failed
        assert store.get_value(result.refs["tune"]["audio"]).samples.shape[1] == 5 * 48000
        written = pretty_midi.PrettyMIDI(str(tmp_path / "out" / "tune.mid"))  # + a provenance text event
        direct = music(key="A", mode="minor", duration_s=5.0, seed=4, loaded_model=tiny)["midi"].parse()
        notes = lambda pm: [(n.pitch, round(n.start, 3)) for i in pm.instruments for n in i.notes]  # noqa: E731
        assert notes(written) == notes(direct) and notes(direct)  # the workflow seed reached the op
        assert (tmp_path / "out" / "tune.wav").stat().st_size > 5 * 48000
        bars = fit_bars(5.0, 90.0)[0]
        assert [(e.step, e.total) for e in sink if isinstance(e, NodeProgress)] == [(b, bars) for b in range(1, bars + 1)]
        assert Executor(store, models=default_registry()).run(parse_workflow(wf)).cached == ["tune"]
    finally:
        reset_default_registry()


# ---- the trainer ----------------------------------------------------------------------------


def tiny_recipe(tmp_path, run: str) -> "Path":  # noqa: F821
    import yaml

    from strata.train.music import DEFAULT_CONFIG

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["model"] = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 256, "dropout": 0.0}
    raw["data"].update(dir=str(tmp_path.parent / "chorales"), limit=6, holdout_fraction=0.2)
    raw["train"].update(batch_size=2, steps=6, warmup_steps=2)
    raw["run"].update(dir=str(tmp_path / run), log_every=1, eval_every=3, checkpoint_minutes=60)
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_trainer_resumes_exactly_and_exports(tmp_path):
    from strata.train import music as trainer

    torch.set_num_threads(1)
    straight = trainer.train(config=tiny_recipe(tmp_path, "a"), max_steps=4)
    part = trainer.train(config=tiny_recipe(tmp_path, "b"), max_steps=2)
    trainer.train(config=tiny_recipe(tmp_path, "b"), resume=True, max_steps=4)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k  # stopping and resuming changes nothing
    log = [json.loads(line) for line in (part / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and "heldout_loss" in log[2]
    assert all(np.isfinite(r["loss"]) for r in log)
    with pytest.raises(Exception, match="already holds a run"):
        trainer.train(config=tiny_recipe(tmp_path, "b"), max_steps=5)

    rec = trainer.export(config=tiny_recipe(tmp_path, "b"), out_dir=tmp_path / "export")
    assert rec["step"] == 4 and abs(rec["heldout_loss_fp16"] - rec["heldout_loss_fp32"]) < 0.01
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    assert "Trained 4 of the schedule's 6 steps" in card and "Bach" in card
    assert "Not measured yet" in card or "measured other weights" in card  # never another model's numbers
    model = MusicModel.from_pretrained(tmp_path / "export")
    check_piece(generate_tokens(model, tonic=2, mode="maj", n_bars=2, seed=0), 2)


def test_heldout_loss_scores_every_token_once(tmp_path):
    """A model that predicts uniformly has loss ln(V) on every scored token, whatever the windows."""
    from strata.train.music import heldout_loss

    class Uniform(torch.nn.Module):
        def forward(self, input_ids, labels):
            logits = torch.zeros(*input_ids.shape, len(VOCAB))
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
            self.scored = getattr(self, "scored", 0) + int((labels[0, 1:] != -100).sum())
            return type("Out", (), {"loss": loss})

    seqs = [generate_tokens(UniformModel(), tonic=0, mode="maj", n_bars=b, seed=b, top_p=1.0) for b in (3, 9)]
    net = Uniform()
    assert heldout_loss(net, seqs, 256) == pytest.approx(np.log(len(VOCAB)))
    assert net.scored == sum(len(s) - 2 for s in seqs)


# ---- the shipped weights ----------------------------------------------------------------------

SHIPPED = __import__("strata.models.builtin", fromlist=["REPO_WEIGHTS"]).REPO_WEIGHTS / "music"


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped music weights (weights/music/)")
def test_shipped_weights_write_in_key_and_are_deterministic():
    torch.set_num_threads(1)
    model = MusicModel.from_pretrained(SHIPPED)
    assert (SHIPPED / "MODEL_CARD.md").is_file() and model.info["training"]["step"] > 0
    in_key = []
    for seed, (tonic, mode) in enumerate([(7, "maj"), (2, "min"), (10, "maj"), (4, "min")]):
        tokens = generate_tokens(model, tonic=tonic, mode=mode, n_bars=8, seed=seed)
        notes = check_piece(tokens, 8)
        check_cadence(notes, 8, tonic, mode)
        in_key.append(in_key_fraction(notes, tonic, mode))
    # random pitches land in a 7-note scale ~60% of the time; Bach's held-out chorales 96%
    assert np.mean(in_key) >= 0.9, in_key
    a, b = (music(key="G", duration_s=6.0, seed=9, loaded_model=model) for _ in range(2))
    assert a["midi"].data == b["midi"].data and np.array_equal(a["audio"].samples, b["audio"].samples)
