"""`pmilab pretrain`: image-text contrastive training on one CPU, one GPU or K ranks (torchrun).

Sections, top to bottom: config, setup (devices, data, tokenizer, model, optimizer), resume,
the loop (gradient accumulation, AdamW warmup-cosine, logit-scale clamp), checkpoints, summary.
Under `torchrun --nproc_per_node K -m pmilab pretrain ...` every rank reads RANK/WORLD_SIZE,
takes its slice of each global batch and computes the local slab of the loss
(pmilab.runtime.distributed); DDP averages the gradients.

Determinism (CPU): the model is initialised from `seed`, the batch of step s is a function of
(seed, s), and the checkpoint stores optimizer, RNG states and step, so a run killed and resumed
ends with exactly the parameters of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from pmilab import atomic
from pmilab.errors import InputError
from pmilab.pretrain.checkpoint import (
    CKPT,
    check_compatible,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pmilab.pretrain.data import ImageTextDataset, StepBatches, collate
from pmilab.pretrain.model import ImageTextModel, ModelConfig, build_model
from pmilab.pretrain.readers import load_data
from pmilab.pretrain.tokenizer import encode, load_tokenizer, save_tokenizer, train_tokenizer
from pmilab.runtime import distributed
from pmilab.runtime.device import resolve_device
from pmilab.runtime.optim import adamw
from pmilab.runtime.precision import param_dtype, resolve_precision
from pmilab.runtime.schedule import warmup_cosine

LOG_FIELDS = ["step", "loss", "lr", "logit_scale", "images", "skipped", "elapsed_s"]


@dataclass
class PretrainConfig:
    data: str = "shapes"
    out: str = "runs/pretrain"
    similarity: str = "linear"
    tower: str = "cnn"
    dim: int = 32
    points: int = 4
    width: int = 64
    context: int = 16
    image_size: int = 32
    sigma: float = 0.5
    steps: int = 300
    batch_size: int = 64  # per rank, per micro-batch
    accum: int = 1  # micro-batches per optimizer step
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 30
    seed: int = 0
    ckpt_every: int = 100
    log_every: int = 10
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp64
    workers: int = 0
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    shapes_train: int = 5000
    shapes_test: int = 1000
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        minimum = {
            "steps": 1,
            "batch_size": 2,
            "accum": 1,
            "ckpt_every": 1,
            "log_every": 1,
            "warmup": 0,
            "workers": 0,
            "threads": 0,
            "dim": 1,
            "points": 1,
            "width": 8,
            "context": 2,
            "image_size": 8,
            "shapes_train": 2,
            "shapes_test": 2,
        }
        for name, low in minimum.items():
            if getattr(self, name) < low:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} must be >= {low}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr}")

    def model_config(self, vocab: int) -> ModelConfig:
        return ModelConfig(
            self.similarity,
            self.tower,
            vocab,
            self.context,
            self.width,
            self.dim,
            self.points,
            self.image_size,
            self.sigma,
        )


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
    return out, load_checkpoint(out) if has_ckpt else None


def setup_tokenizer(out: Path, captions: list[str], ckpt: dict | None, info) -> object:
    """Train on the caption corpus (rank 0) and save it; everyone loads the saved file."""
    path = out / "tokenizer.json"
    if ckpt is None and info.main:
        save_tokenizer(train_tokenizer(captions), path)
    if info.world > 1:
        dist.barrier()
    return load_tokenizer(path)


def load_train_data(cfg: PretrainConfig, info: distributed.DistInfo):
    """Rank 0 reads first (generating a missing shapes cache once), then the other ranks."""
    sizes = (cfg.shapes_train, cfg.shapes_test)
    data = load_data(cfg.data, "train", sizes, 0, cfg.progress) if info.main else None
    if info.world > 1:
        dist.barrier()
    return data if info.main else load_data(cfg.data, "train", sizes, 0, False)


def train(cfg: PretrainConfig) -> dict:
    """Run (or resume) training; returns the summary written to OUT/summary.json."""
    info = distributed.detect()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and info.world > 1:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    distributed.init(info, device)
    precision = resolve_precision(cfg.precision, device)
    out, ckpt = prepare_out(cfg, info)
    data = load_train_data(cfg, info)
    if info.main:  # only once the data is known to be readable
        out.mkdir(parents=True, exist_ok=True)
    tok = setup_tokenizer(out, data.captions, ckpt, info)
    mcfg = cfg.model_config(tok.get_vocab_size())
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg)
    model = model.to(device=device, dtype=param_dtype(precision))
    opt = optimizer_for(model, cfg)
    start, skipped, elapsed = 0, Counter(data.skipped), 0.0
    if ckpt is not None:
        check_compatible(ckpt, asdict(mcfg), out)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start, skipped, elapsed = ckpt["step"], Counter(ckpt["skipped"]), ckpt["elapsed_s"]
        set_rng_state(ckpt["rng"])
    if info.main:
        atomic.write_json(out / "config.json", {"pretrain": asdict(cfg), "model": asdict(mcfg)})
        truncate_log(out / "log.csv", start)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if info.world > 1 else model
    loop = Loop(cfg, info, device, precision, data, tok, model, ddp, opt, out, skipped)
    return loop.run(start, elapsed)


class Loop:
    """The training loop proper, with its logging and checkpointing."""

    def __init__(self, cfg, info, device, precision, data, tok, model, ddp, opt, out, skipped):
        self.cfg, self.info, self.device, self.precision = cfg, info, device, precision
        self.data, self.tok, self.model, self.ddp, self.opt = data, tok, model, ddp, opt
        self.out, self.skipped = out, skipped

    def batches(self, start: int):
        c = self.cfg
        sampler = StepBatches(
            len(self.data),
            c.batch_size,
            c.accum,
            c.seed,
            start,
            c.steps,
            self.info.rank,
            self.info.world,
        )
        return torch.utils.data.DataLoader(
            ImageTextDataset(self.data, c.image_size),
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=c.workers,
            persistent_workers=False,
        )

    def micro_step(self, batch, last: bool) -> tuple[float, int]:
        """Forward/backward one micro-batch; returns (loss, images used)."""
        images, idx, bad = batch
        for i in bad:
            src = self.data.sources[i]
            warnings.warn(
                f"skipped an undecodable image: {src if isinstance(src, str) else i}", stacklevel=2
            )
        self.skipped["corrupt_image"] += len(bad)
        n = len(idx)
        if self.info.world > 1:  # every rank must gather equal-sized batches
            t = torch.tensor([n], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            self.skipped["dropped_to_equalise_ranks"] += n - int(t)
            n = int(t)
        if n < 2:  # every rank agrees (n is the minimum), so no rank waits on another
            self.skipped["batch_too_small"] += 1
            if last and self.info.world > 1:  # DDP would have synced here: do it by hand
                sync_gradients(self.model, self.info.world)
            return math.nan, 0
        ids, mask = encode(self.tok, [self.data.captions[i] for i in idx[:n]], self.cfg.context)
        dtype = next(self.model.parameters()).dtype
        images = images[:n].to(self.device, dtype)
        ids, mask = ids.to(self.device), mask.to(self.device)
        ctx = self.ddp.no_sync() if (self.info.world > 1 and not last) else contextlib.nullcontext()
        with ctx:
            loss = self.ddp(images, ids, mask, autocast=self.precision == "bf16")
            (loss / self.cfg.accum).backward()
        loss = loss.detach().clone()
        if self.info.world > 1:  # log the loss of the global batch: the mean of the local slabs
            dist.all_reduce(loss)
            loss /= self.info.world
        return float(loss), n

    def run(self, start: int, elapsed: float) -> dict:
        cfg, out = self.cfg, self.out
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            desc=f"pretrain {cfg.similarity}",
            disable=not (cfg.progress and self.info.main),
            dynamic_ncols=True,
        )
        t0, images_seen, losses, step = time.perf_counter() - elapsed, 0, [], start
        it = iter(self.batches(start))
        for step in range(start, cfg.steps):
            for g in self.opt.param_groups:
                g["lr"] = warmup_cosine(step, cfg.lr, cfg.warmup, cfg.steps)
            self.opt.zero_grad(set_to_none=True)
            step_losses = []
            for k in range(cfg.accum):
                loss, n = self.micro_step(next(it), last=k == cfg.accum - 1)
                step_losses.append(loss)
                images_seen += n * self.info.world
            self.opt.step()
            self.model.similarity.clamp_()
            finite = [v for v in step_losses if not math.isnan(v)]
            losses.append(sum(finite) / len(finite) if finite else math.nan)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                self.log(done, losses[-1], time.perf_counter() - t0)
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                self.checkpoint(done, time.perf_counter() - t0)
        bar.close()
        wall = time.perf_counter() - t0
        summary = {
            "similarity": cfg.similarity,
            "steps": cfg.steps,
            "final_loss": losses[-1] if losses else None,
            "wall_s": wall,
            "images_per_s_this_session": images_seen / max(1e-9, wall - elapsed),
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.info.world,
            "skipped": dict(self.skipped),
            "logit_scale": self.model.logit_scale(),
        }
        if self.info.main:
            atomic.write_json(out / "summary.json", summary)
            if sum(self.skipped.values()):
                print(f"pmilab pretrain: skipped samples: {dict(self.skipped)}")
        return summary

    def log(self, step: int, loss: float, elapsed: float) -> None:
        if not self.info.main:
            return
        c = self.cfg
        path = self.out / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, LOG_FIELDS)
            if new:
                w.writeheader()
            w.writerow(
                {
                    "step": step,
                    "loss": f"{loss:.6f}",
                    "lr": f"{warmup_cosine(step - 1, c.lr, c.warmup, c.steps):.6g}",
                    "logit_scale": f"{self.model.logit_scale():.4f}",
                    "images": step * self.cfg.batch_size * self.cfg.accum * self.info.world,
                    "skipped": sum(self.skipped.values()),
                    "elapsed_s": f"{elapsed:.2f}",
                }
            )

    def checkpoint(self, step: int, elapsed: float) -> None:
        if self.info.main:
            save_checkpoint(
                self.out,
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.opt.state_dict(),
                    "step": step,
                    "model_config": asdict(self.model.cfg),
                    "config": asdict(self.cfg),
                    "rng": rng_state(),
                    "skipped": dict(self.skipped),
                    "elapsed_s": elapsed,
                },
            )
        if self.info.world > 1:
            dist.barrier()


def sync_gradients(model: torch.nn.Module, world: int) -> None:
    """Average gradients over ranks (missing ones count as zero), as DDP's reducer does."""
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past `step` (written after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    with open(path) as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        w.writeheader()
        w.writerows(r for r in rows if int(r["step"]) <= step)
