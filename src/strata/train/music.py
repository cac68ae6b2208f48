"""Train strata's built-in music model (read top to bottom).

    config (YAML) ─► Bach chorales (music21 corpus, 4/4) ─► split by tune (~10% held out)
    ─► training pieces × every key in range ─► token sequences ─► loop:
        random window starting at a bar line, ``BOS KEY`` in front → GPT-2 next-token
        cross-entropy (the prompt and padding are not scored) → AdamW (warmup, cosine lr)
    every eval_every steps: held-out loss over every held-out chorale → log.jsonl
    every few minutes, on SIGTERM/Ctrl-C and at the end: atomic checkpoint

``export`` writes fp16 safetensors + config.json + MODEL_CARD.md into ``weights/music/``
(no optimizer state) and checks the held-out loss of the reloaded fp16 weights.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from strata.errors import StrataError
from strata.models.music_model import MusicModel, MusicModelConfig, build_network
from strata.models.music_tokens import TOKEN_ID
from strata.train import data_chorales
from strata.train.runs import (CHECKPOINT, Recipe, load_checkpoint, optimizer_step, resolve_run_dir, restore,
                               run_book, save_checkpoint, start_run, warmup_cosine)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "music.yaml"
REPO_WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "music"
IGNORE = -100  # label value cross-entropy skips
PAD, BOS = TOKEN_ID["PAD"], TOKEN_ID["BOS"]


@dataclass
class MusicTrainConfig(Recipe[MusicModelConfig]):
    """The music model's recipe (configs/music.yaml)."""

    @classmethod
    def load(cls, path: Path | None = None) -> "MusicTrainConfig":
        return cls.parse(path, DEFAULT_CONFIG, MusicModelConfig)


def load_split(data: dict) -> tuple[list[data_chorales.Chorale], list[data_chorales.Chorale]]:
    """(train, held-out) chorales as the recipe's data section says (the bench uses this too)."""
    chorales = data_chorales.load(Path(data["dir"]).expanduser() if data.get("dir") else None,
                                  limit=data.get("limit"))
    return data_chorales.split(chorales, holdout_fraction=float(data["holdout_fraction"]),
                               seed=int(data["split_seed"]))


def fingerprint(train: list, held: list) -> str:
    """sha256 over the chorale names of each side: identifies the split a run trained on."""
    names = "|".join(c.name for c in train) + "#" + "|".join(c.name for c in held)
    return hashlib.sha256(names.encode()).hexdigest()


# ---- windows --------------------------------------------------------------------------------


class Windows:
    """Training windows: every (sequence, bar line) pair, drawn uniformly, ``BOS KEY`` in front."""

    def __init__(self, sequences: list[list[int]], length: int):
        self.seqs = [np.asarray(s, np.int64) for s in sequences]
        self.length = length
        self.starts = np.array([(i, b) for i, s in enumerate(sequences) for b in data_chorales.bar_starts(s)], np.int64)
        if not len(self.starts):
            raise StrataError("no training windows: the training split is empty")

    def window(self, seq: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(input ids, labels) of one window; the prompt and padding are not scored."""
        body = seq[start:start + length - 2]  # start ≥ 2: the first BAR follows BOS KEY
        ids = np.full(length, PAD, np.int64)
        ids[:2] = seq[:2]  # BOS KEY
        ids[2:2 + len(body)] = body
        labels = ids.copy()
        labels[:2] = IGNORE
        labels[2 + len(body):] = IGNORE
        return ids, labels

    def batch(self, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(self.starts), (size,), generator=g).numpy()
        pairs = [self.window(self.seqs[i], int(s), self.length) for i, s in self.starts[pick]]
        return torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))


def lm_loss(net, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the scored tokens (GPT-2 shifts the labels itself)."""
    return net(input_ids=ids, attention_mask=(ids != PAD).long(), labels=labels).loss


@torch.no_grad()
def heldout_loss(net, sequences: list[list[int]], length: int) -> float:
    """Mean cross-entropy (nats/token) of every token after the KEY in ``sequences``.

    Each piece is scored in windows of ``length``: a window starts at a bar line about half a
    window before the first unscored token (context) and only tokens not scored yet count.
    """
    was_training = net.training
    net.eval()
    total, count = 0.0, 0
    for seq in sequences:
        seq_arr = np.asarray(seq, np.int64)
        bars = data_chorales.bar_starts(seq)
        done = 2
        while done < len(seq):
            near = [b for b in bars if done - length // 2 <= b <= done]
            start = near[0] if near else done
            ids = np.concatenate([seq_arr[:2], seq_arr[max(start, 2):max(start, 2) + length - 2]])
            labels = ids.copy()
            labels[:2] = IGNORE
            labels[2:2 + max(0, done - max(start, 2))] = IGNORE
            scored = int((labels != IGNORE).sum())
            out = net(input_ids=torch.from_numpy(ids)[None], labels=torch.from_numpy(labels)[None])
            total += float(out.loss) * scored
            count += scored
            done = max(start, 2) + length - 2
    net.train(was_training)
    return total / max(count, 1)


def lr_at(step: int, tc: dict) -> float:
    """Linear warmup, then cosine from ``lr`` to ``lr_final`` at ``steps`` (constant after)."""
    warm = int(tc["warmup_steps"])
    return warmup_cosine(step, lr=float(tc["lr"]), lr_final=float(tc["lr_final"]), steps=int(tc["steps"]),
                         warmup=warm, cosine_start=warm)


# ---- the loop -------------------------------------------------------------------------------


def train(*, config: Path | None = None, resume: bool = False, threads: int = 1, max_minutes: float | None = None,
          max_steps: int | None = None, run_dir: Path | None = None) -> Path:
    """Train (or resume) the music model until ``train.steps`` (or a limit); returns the run directory.

    Args:
        config: YAML recipe (default configs/music.yaml). Resuming without it uses the recipe stored
            in the checkpoint; with it, data/train/run values may change, the model may not.
        resume: continue from ``run_dir/checkpoint.pt`` (error if absent).
        threads: torch CPU threads (default 1).
        max_minutes: stop with a checkpoint after this much wall time; None = no limit.
        max_steps: stop with a checkpoint at this global step; None = ``train.steps``.
        run_dir: overrides the config/env run directory.
    """
    cfg, rdir, state = start_run(MusicTrainConfig.load(config), "music", model_class=MusicModelConfig, config=config,
                                 resume=resume, threads=threads, run_dir=run_dir)
    ckpt_path = rdir / CHECKPOINT
    tc = cfg.train
    train_set, held_set = load_split(cfg.data)
    split_id = fingerprint(train_set, held_set)
    if state is not None and state["dataset"] != split_id:
        raise StrataError(f"the chorale split differs from the one this run started with in {rdir}; "
                          "use the same data section (holdout_fraction, split_seed) or start a new run")
    windows = Windows(data_chorales.augmented_sequences(train_set, transpose=bool(cfg.data["transpose"])),
                      cfg.model.n_positions)
    held_seqs = [c.tokens() for c in held_set]

    torch.manual_seed(int(tc["seed"]))
    net = build_network(cfg.model).train()
    opt = torch.optim.AdamW(net.parameters(), lr=float(tc["lr"]), betas=tuple(tc["betas"]),
                            weight_decay=float(tc["weight_decay"]))
    g = torch.Generator().manual_seed(int(tc["seed"]))
    step, trained_s = restore(state, net, opt)
    if state is not None:
        g.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
    last = min(int(tc["steps"]), max_steps) if max_steps is not None else int(tc["steps"])
    print(f"run dir {rdir} | step {step}/{last} | GPT-2 {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M params "
          f"| {len(train_set)} train chorales ({len(windows.seqs)} with transpositions, {len(windows.starts)} windows) "
          f"/ {len(held_set)} held out | {threads} thread(s)", flush=True)

    t_session = time.time()

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "rng": {"generator": g.get_state(), "torch": torch.get_rng_state()},
            "model_config": asdict(cfg.model), "data": cfg.data, "train": tc, "run": cfg.run,
            "config_source": cfg.source, "dataset": split_id, "saved_at": time.time(),
            "train_seconds": trained_s + time.time() - t_session,
        })

    with run_book(rdir, step=step, total=last, checkpoint=checkpoint,
                  checkpoint_minutes=float(cfg.run["checkpoint_minutes"]), max_minutes=max_minutes) as book:
        while book.running(step, last):
            ids, labels = windows.batch(int(tc["batch_size"]), g)
            loss = lm_loss(net, ids, labels)
            optimizer_step(opt, loss, lr_at(step, tc), grad_clip=float(tc["grad_clip"]))
            step += 1
            book.add(step, loss.item())
            book.log_step(step, lr_at(step, tc),
                          lambda: {"heldout_loss": round(heldout_loss(net, held_seqs, cfg.model.n_positions), 4)},
                          every=int(cfg.run["log_every"]), eval_every=int(cfg.run["eval_every"]), last=last)
    print(f"checkpoint at step {step} in {ckpt_path}", flush=True)
    return rdir


# ---- export ---------------------------------------------------------------------------------


def export(*, config: Path | None = None, run_dir: Path | None = None, out_dir: Path = REPO_WEIGHTS) -> dict:
    """Write fp16 ``model.safetensors`` + ``config.json`` + ``MODEL_CARD.md`` into ``out_dir``.

    Returns the export record (step, training minutes, held-out loss in fp32 and after the fp16
    round trip, sizes). The card's evaluation section comes from ``bench/results/music.json`` when
    that file measured these exact weights; otherwise it says how to produce it.
    """
    from strata.train.music_card import write_card

    rdir = resolve_run_dir(MusicTrainConfig.load(config).run, "music", run_dir)
    state = load_checkpoint(rdir / CHECKPOINT)
    mcfg = MusicModelConfig.from_dict(state["model_config"])
    net = build_network(mcfg)
    net.load_state_dict(state["model"])
    net.eval()
    train_set, held_set = load_split(state["data"])
    held_seqs = [c.tokens() for c in held_set]
    record = {"step": int(state["step"]), "train_minutes": round(float(state["train_seconds"]) / 60, 1),
              "train_chorales": len(train_set), "heldout_chorales": len(held_set),
              "train_sequences": len(data_chorales.augmented_sequences(train_set, transpose=bool(state["data"]["transpose"]))),
              "heldout_loss_fp32": round(heldout_loss(net, held_seqs, mcfg.n_positions), 4)}
    last_log = _last_train_loss(rdir / "log.jsonl")
    if last_log is not None:
        record["train_loss"] = last_log
    extra = {"training": {**record, "data": state["data"], "train": state["train"], "saved_at": state["saved_at"]}}
    path = MusicModel(mcfg, net).save_pretrained(Path(out_dir), dtype=torch.float16, extra=extra)
    reloaded = MusicModel.from_pretrained(Path(out_dir))
    record["heldout_loss_fp16"] = round(heldout_loss(reloaded.net, held_seqs, mcfg.n_positions), 4)
    record["weights"] = str(path)
    record["weights_mb"] = round(path.stat().st_size / 1e6, 2)
    record["params_m"] = round(reloaded.param_count() / 1e6, 2)
    write_card(Path(out_dir), record, mcfg, state["train"])
    (rdir / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _last_train_loss(log_path: Path) -> float | None:
    if not log_path.is_file():
        return None
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-1]["loss"] if lines else None
