"""`pmilab pretrain`: image-text contrastive training on one CPU, one GPU or K ranks.

Sections, top to bottom (nanoGPT / open_clip_train style): setup (device, ranks, output
directory and resume check), data, tokenizer, model and optimizer, the loop (exact gradient
accumulation, AdamW warmup-cosine, logit-scale clamp, the non-finite stop), checkpoints, summary.
The configuration is `config.PretrainConfig`.

Ranks come from torchrun or SLURM (`runtime.distributed.detect`); every rank takes its slice of
each global batch (map-style data) or its shards (a stream) and computes the local slab of the
loss (`runtime.distributed`); DDP averages the gradients.

No silent failures: a non-finite loss (or weights) stops the run with `TrainingFailed`, naming
the step, before anything is written, so the last good checkpoint stays byte-identical; a
dataset with no decodable image fails before training; `--resume` refuses changed settings.

Determinism (CPU, map-style data): the model is initialised from `seed`, the batch of step s is
a function of (seed, s), and the checkpoint stores optimizer, RNG states and step, so a run
killed and resumed ends with exactly the parameters of an uninterrupted run.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from pmilab import atomic
from pmilab.errors import InputError
from pmilab.pretrain.accum import accumulate
from pmilab.pretrain.checkpoint import (
    CKPT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pmilab.pretrain.config import PretrainConfig, resume_changes
from pmilab.pretrain.data import (
    ImageTextDataset,
    SkipLog,
    StepBatches,
    collate,
    first_decodable,
    identity,
)
from pmilab.pretrain.logs import RunLog
from pmilab.pretrain.model import ImageTextModel, build_model
from pmilab.pretrain.readers import CsvKeys, expand_shards, is_table, load_data
from pmilab.pretrain.stream import ShardStream, StreamBatches, read_stream, stream_captions
from pmilab.pretrain.tokenizer import (
    KINDS,
    encode,
    from_string,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from pmilab.runtime import distributed
from pmilab.runtime.device import resolve_device
from pmilab.runtime.optim import adamw
from pmilab.runtime.precision import param_dtype, resolve_precision
from pmilab.runtime.schedule import warmup_cosine

__all__ = ["PretrainConfig", "TrainingFailed", "train"]

TOKENIZER_CAPTIONS = 100_000  # captions read from shards to train a tokenizer on


class TrainingFailed(RuntimeError):
    """The run cannot go on (a non-finite loss or weights); the last checkpoint is untouched."""


# ---------------------------------------------------------------------------------------------
# setup


def optimizer_for(model: ImageTextModel, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW under the project's decay rule (runtime.optim), with CLIP's betas and eps."""
    return adamw(
        model,
        model.similarity.no_decay_parameters(),
        cfg.lr,
        cfg.weight_decay,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def prepare_out(cfg: PretrainConfig, info: distributed.DistInfo) -> tuple[Path, dict | None]:
    """The output directory and the checkpoint to resume from (None: fresh start)."""
    out = Path(cfg.out)
    has_ckpt = (out / CKPT).is_file()
    if has_ckpt and not cfg.resume:
        raise InputError(
            f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out"
        )
    if cfg.resume and not has_ckpt and info.main:
        print(f"pmilab pretrain: no checkpoint in {out} yet; starting from step 0")
    if not has_ckpt:
        return out, None
    ckpt = load_checkpoint(out)
    changed = resume_changes(ckpt["config"], cfg, ckpt.get("world_size", 1), info.world)
    if changed:
        raise InputError(
            f"--resume: the checkpoint in {out} was trained with other settings: "
            f"{'; '.join(changed)}; resume with its settings ({out}/config.json) or use another --out"
        )
    if ckpt["step"] > cfg.steps:
        raise InputError(f"--steps {cfg.steps} ends before the checkpoint's step {ckpt['step']}")
    old = ckpt["config"]["steps"]
    if cfg.steps > old and info.main:
        s, w = ckpt["step"], ckpt["warmup"]
        print(
            f"pmilab pretrain: --resume extends the run from {old} to {cfg.steps} steps; the "
            f"cosine schedule now ends at step {cfg.steps} (LR at step {s}: "
            f"{warmup_cosine(s, cfg.lr, w, old):.3g} -> {warmup_cosine(s, cfg.lr, w, cfg.steps):.3g})"
        )
    return out, ckpt


def setup_device(cfg: PretrainConfig, info: distributed.DistInfo) -> torch.device:
    device = resolve_device(cfg.device)
    if device.type == "cuda" and info.world > 1:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return device


# ---------------------------------------------------------------------------------------------
# data


def csv_keys(cfg: PretrainConfig) -> CsvKeys:
    return CsvKeys(cfg.csv_separator, cfg.csv_img_key, cfg.csv_caption_key)


def shard_list(cfg: PretrainConfig) -> list[str]:
    """The shards of --data when it names shards, else []."""
    if cfg.data in ("shapes", "digits") or is_table(cfg.data):
        return []
    return expand_shards(cfg.data)


def load_train_data(cfg: PretrainConfig, info: distributed.DistInfo):
    """Map-style data (rank 0 reads first: it generates a missing shapes cache once), or None."""
    sizes, keys = (cfg.shapes_train, cfg.shapes_test), csv_keys(cfg)
    data = load_data(cfg.data, "train", sizes, 0, cfg.progress, keys) if info.main else None
    if info.world > 1:
        dist.barrier()
    if not info.main:
        data = load_data(cfg.data, "train", sizes, 0, False, keys)
    first_decodable(data, cfg.image_size)  # fails here, before training, if there is none
    return data


def check_shards(shards: list[str], image_size: int) -> None:
    """Fail before training when the shards hold no decodable (image, caption) sample."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the training stream warns about each, once
        items, skips = read_stream(shards, limit=1, image_size=image_size)
    if not items:
        raise InputError(
            f"no decodable sample in {len(shards)} shard(s): {skips.counts() or 'no samples'}"
        )


# ---------------------------------------------------------------------------------------------
# tokenizer and model


def setup_tokenizer(cfg, out: Path, captions, ckpt: dict | None, info):
    """From the checkpoint; else a tokenizer.json path; else trained on the captions (rank 0)."""
    if ckpt is not None and "tokenizer" in ckpt:
        return from_string(ckpt["tokenizer"])
    path = out / "tokenizer.json"
    if info.main:
        if cfg.tokenizer in KINDS:
            tok = train_tokenizer(captions(), cfg.vocab_size, cfg.tokenizer)
        else:
            tok = load_tokenizer(Path(cfg.tokenizer))
        save_tokenizer(tok, path)
    if info.world > 1:
        dist.barrier()
    return load_tokenizer(path)


def setup_model(cfg: PretrainConfig, vocab: int, device, precision, ckpt=None) -> ImageTextModel:
    """A fresh model from the flags, or the checkpoint's architecture (no pretrained folder is
    read again on resume: the towers' configs are in the checkpoint)."""
    mcfg = cfg.model_config(vocab) if ckpt is None else ckpt["model_config"]
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg)
    if cfg.grad_checkpointing:
        model.enable_grad_checkpointing()
    return model.to(device=device, dtype=param_dtype(precision))


def train(cfg: PretrainConfig) -> dict:
    """Run (or resume) training; returns the summary written to OUT/summary.json."""
    info = distributed.detect()
    device = setup_device(cfg, info)
    distributed.init(info, device)
    precision = resolve_precision(cfg.precision, device)
    out, ckpt = prepare_out(cfg, info)
    warmup = ckpt["warmup"] if ckpt is not None else cfg.effective_warmup()
    if ckpt is None and info.main:
        cfg.warn_warmup()
    shards = shard_list(cfg)
    data = None
    if shards:
        check_shards(shards, cfg.image_size)
    else:
        data = load_train_data(cfg, info)
    if info.main:  # only once the data is known to be readable
        out.mkdir(parents=True, exist_ok=True)

    def captions() -> list[str]:
        return data.captions if data is not None else stream_captions(shards, TOKENIZER_CAPTIONS)

    tok = setup_tokenizer(cfg, out, captions, ckpt, info)
    model = setup_model(cfg, tok.get_vocab_size(), device, precision, ckpt)
    opt = optimizer_for(model, cfg)
    start, elapsed, skips, events = 0, 0.0, SkipLog(), Counter()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start, elapsed = ckpt["step"], ckpt["elapsed_s"]
        skips, events = SkipLog(ckpt["skips"]), Counter(ckpt["events"])
        set_rng_state(ckpt["rng"])
    if info.main:
        atomic.write_json(
            out / "config.json",
            {"pretrain": asdict(cfg), "model": asdict(model.cfg), "warmup_used": warmup},
        )
    ddp = torch.nn.parallel.DistributedDataParallel(model) if info.world > 1 else model
    loop = Loop(cfg, info, device, precision, tok, model, ddp, opt, out, warmup)
    loop.skips, loop.events = skips, events
    loop.reader_skips = Counter(data.skipped) if data is not None else Counter()
    loop.source = micro_batches(cfg, info, data, shards, model.cfg.image_size, start, skips)
    return loop.run(start, elapsed)


def micro_batches(cfg, info, data, shards, image_size, start, skips):
    """Micro-batches (images, captions) of steps start.. for this rank, in order."""
    if shards:
        stream = ShardStream(
            shards,
            image_size,
            info.rank,
            info.world,
            cfg.seed + 7919 * start,
            cfg.dataset_resampled,
        )
        if info.main and not cfg.dataset_resampled and cfg.workers > len(shards) // info.world:
            warnings.warn(
                f"{len(shards)} shard(s) over {info.world} rank(s) leave some of the "
                f"{cfg.workers} loader workers without a shard (they sit idle)",
                stacklevel=2,
            )
        for images, caps, _labels in StreamBatches(stream, cfg.batch_size, cfg.workers, skips):
            yield images, caps
        return
    sampler = StepBatches(
        len(data), cfg.batch_size, cfg.accum_freq, cfg.seed, start, cfg.steps, info.rank, info.world
    )
    loader = torch.utils.data.DataLoader(
        ImageTextDataset(data, image_size),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.workers,
        persistent_workers=False,
    )
    for images, idx, bad in loader:
        for i in bad:
            skips.add("corrupt_image", identity(data, i))
        yield images, [data.captions[i] for i in idx]


# ---------------------------------------------------------------------------------------------
# the loop


class Loop:
    """The training loop proper, with its logging and checkpointing."""

    def __init__(self, cfg, info, device, precision, tok, model, ddp, opt, out, warmup):
        self.cfg, self.info, self.device, self.precision = cfg, info, device, precision
        self.tok, self.model, self.ddp, self.opt, self.out = tok, model, ddp, opt, out
        self.warmup = warmup
        self.skips, self.events, self.reader_skips = SkipLog(), Counter(), Counter()
        self.source = iter(())

    def next_step_batches(self) -> list[tuple]:
        """The k micro-batches of one step, moved to the device; equal sizes on every rank."""
        dtype = next(self.model.parameters()).dtype
        micro = []
        for _ in range(self.cfg.accum_freq):
            images, caps = next(self.source)
            n = len(caps)
            if self.info.world > 1:  # every rank must gather equal-sized batches
                t = torch.tensor([n], device=self.device)
                dist.all_reduce(t, op=dist.ReduceOp.MIN)
                self.events["dropped_to_equalise_ranks"] += n - int(t)
                n = int(t)
            if n < 1:  # every rank agrees (n is the minimum)
                self.events["empty_micro_batch"] += 1
                continue
            ids, mask = encode(self.tok, caps[:n], self.cfg.context)
            micro.append(
                (images[:n].to(self.device, dtype), ids.to(self.device), mask.to(self.device))
            )
        return micro

    def step_grads(self, micro: list[tuple]) -> float | None:
        """Gradients of one step; the global loss (mean of the ranks' slabs), None if no pairs."""
        if sum(len(m[0]) for m in micro) < 2:  # the same on every rank: no rank waits
            self.events["batch_too_small"] += 1
            return None
        loss = accumulate(
            self.model, self.ddp, micro, self.precision == "bf16", self.info.world > 1
        ).clone()
        if self.info.world > 1:
            dist.all_reduce(loss)
            loss /= self.info.world
        return float(loss)

    def run(self, start: int, elapsed: float) -> dict:
        cfg = self.cfg
        log = RunLog(self.out, start, cfg.report_to == "tensorboard") if self.info.main else None
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            desc=f"pretrain {cfg.similarity}",
            disable=not (cfg.progress and self.info.main),
            dynamic_ncols=True,
        )
        t0 = time.perf_counter() - elapsed
        images_seen, loss, window = 0, math.nan, Counter()
        for step in range(start, cfg.steps):
            lr = warmup_cosine(step, cfg.lr, self.warmup, cfg.steps)
            for g in self.opt.param_groups:
                g["lr"] = lr
            self.opt.zero_grad(set_to_none=True)
            t_start = time.perf_counter()
            micro = self.next_step_batches()
            t_data = time.perf_counter()
            step_loss = self.step_grads(micro)
            if step_loss is not None and not math.isfinite(step_loss):
                self.fail(step + 1, f"the loss is {step_loss}")
            if step_loss is not None:
                self.opt.step()
                self.model.similarity.clamp_()
                loss = step_loss
            n = sum(len(m[0]) for m in micro) * self.info.world
            images_seen += n
            now = time.perf_counter()
            window.update(steps=1, samples=n, data_s=t_data - t_start, step_s=now - t_start)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                self.log_row(log, done, loss, lr, window, now - t0)
                window = Counter()
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                self.checkpoint(done, time.perf_counter() - t0)
        bar.close()
        if log is not None:
            log.close()
        return self.summary(loss, time.perf_counter() - t0, elapsed, images_seen)

    def fail(self, step: int, what: str) -> None:
        last = load_step(self.out)
        kept = f"the checkpoint of step {last} is kept" if last is not None else "no checkpoint"
        raise TrainingFailed(
            f"{what} at step {step} of {self.cfg.steps}; stopped without writing ({kept}). "
            f"Lower --lr (now {self.cfg.lr:g}) or check the data"
        )

    def skipped(self) -> dict:
        total = Counter(self.reader_skips) + Counter(self.skips.merged().counts()) + self.events
        return dict(sorted(total.items()))

    def log_row(self, log, step, loss, lr, window, elapsed) -> None:
        skipped = sum(self.skipped().values())  # a collective under DDP: every rank calls it
        if log is None:
            return
        steps = max(window["steps"], 1)
        log.write(
            {
                "step": step,
                "loss": loss,
                "lr": lr,
                "logit_scale": self.model.logit_scale(),
                "images": step * self.cfg.batch_size * self.cfg.accum_freq * self.info.world,
                "skipped": skipped,
                "samples_per_s": window["samples"] / max(window["step_s"], 1e-9),
                "data_s": window["data_s"] / steps,
                "step_s": window["step_s"] / steps,
                "elapsed_s": elapsed,
            }
        )

    # -----------------------------------------------------------------------------------------
    # checkpoints

    def checkpoint(self, step: int, elapsed: float) -> None:
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:  # never write non-finite weights over a good checkpoint
            self.fail(step, f"non-finite weights ({bad[0]}, ...)")
        skips = self.skips.merged().state()  # a collective under DDP
        if self.info.main:
            save_checkpoint(
                self.out,
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.opt.state_dict(),
                    "step": step,
                    "model_config": asdict(self.model.cfg),
                    "config": asdict(self.cfg),
                    "world_size": self.info.world,
                    "warmup": self.warmup,
                    "tokenizer": self.tok.to_str(),
                    "rng": rng_state(),
                    "skips": skips,
                    "events": dict(self.events),
                    "elapsed_s": elapsed,
                },
                keep=self.cfg.keep_checkpoints,
            )
        if self.info.world > 1:
            dist.barrier()

    def summary(self, loss: float, wall: float, elapsed: float, images_seen: int) -> dict:
        summary = {
            "similarity": self.cfg.similarity,
            "steps": self.cfg.steps,
            "final_loss": loss,
            "wall_s": wall,
            "images_per_s_this_session": images_seen / max(1e-9, wall - elapsed),
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.info.world,
            "skipped": self.skipped(),
            "logit_scale": self.model.logit_scale(),
        }
        if self.info.main:
            atomic.write_json(self.out / "summary.json", summary)
            if summary["skipped"]:
                print(f"pmilab pretrain: skipped samples: {summary['skipped']}")
        return summary


def load_step(out: Path) -> int | None:
    """The step of the checkpoint in `out`, if there is a readable one."""
    try:
        return load_checkpoint(out)["step"]
    except (FileNotFoundError, InputError):
        return None
