"""`pmilab pretrain`: image-text contrastive training on one CPU, one GPU or K ranks.

Sections, top to bottom (nanoGPT / open_clip_train style): setup (device, ranks, output
directory and resume check), data (preprocessing: preprocess.py) and the run plan (plan.py:
--epochs, cadences), tokenizer, model and optimizer, the loop (exact gradient accumulation, the LR
schedule, gradient clipping, AdamW, logit-scale clamp, the non-finite stop), checkpoints,
evaluation during training (val.py), summary. The configuration is `config.PretrainConfig`.

Ranks come from torchrun or SLURM (`runtime.distributed.detect`); every rank takes its slice of
each global batch (map-style data) or its shards (a stream) and computes the local slab of the
loss (`runtime.distributed`); DDP averages the gradients.

No silent failures: a non-finite loss (or weights) stops the run with `TrainingFailed`, naming
the step, before anything is written, so the last good checkpoint stays byte-identical; a
dataset with no decodable image fails before training; `--resume` refuses changed settings; a
run stuck at the loss of constant logits is warned about once and marked in summary.json
(`CollapseWatch`). Ctrl-C ends the step under way, checkpoints it and exits 130 (`Interrupt`).

Determinism (CPU, map-style data): the model is initialised from `seed`, the batch of step s is
a function of (seed, s) (and so is each sample's random crop under --aug rrc), and the
checkpoint stores optimizer, RNG states and step, so a run killed and resumed ends with exactly
the parameters of an uninterrupted run. Evaluation during training restores every RNG state.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
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
    skip_undecodable,
)
from pmilab.pretrain.hf_towers import pretrained_image_size
from pmilab.pretrain.logs import VAL_LOG, RunLog, one_line_warnings
from pmilab.pretrain.model import ImageTextModel, build_model, head_inputs
from pmilab.pretrain.plan import RunPlan, lr_at, plan_run
from pmilab.pretrain.preprocess import Preprocess, preprocess_for
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
from pmilab.pretrain.towers import check_towers
from pmilab.pretrain.val import InRunEval, scalars
from pmilab.runtime import distributed
from pmilab.runtime.device import resolve_device
from pmilab.runtime.optim import adamw
from pmilab.runtime.precision import autocast_dtype, needs_scaler, param_dtype, resolve_precision

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


def _remove_earlier_run(out: Path) -> None:
    """--overwrite replaces an earlier pretrain run in `out`: its checkpoints (numbered ones
    too), log, summary and TensorBoard files go, so that nothing of the old run is read as
    the new one's. Another command's files, which --overwrite only writes beside, stay."""
    import shutil

    from pmilab.outputs import MARKERS

    for name in (*MARKERS["pretrain"], VAL_LOG):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def prepare_out(cfg: PretrainConfig, info: distributed.DistInfo) -> tuple[Path, dict | None]:
    """The output directory and the checkpoint to resume from (None: fresh start). An --out
    holding another run or another command's output is refused unless --overwrite (fresh start)
    or, for this command's own run, --resume (`pmilab.outputs` owns the rule). The run's
    length is checked later (`check_resume_length`), once --epochs is resolved."""
    from pmilab.outputs import check_out

    out = Path(cfg.out)
    has_ckpt = (out / CKPT).is_file() and not cfg.overwrite
    if has_ckpt and not cfg.resume:
        raise InputError(
            f"{out} already holds a checkpoint; pass --resume to continue it, --overwrite to "
            "start afresh, or choose another --out"
        )
    # The other ranks let this command's own files pass: rank 0 may have written them already.
    check_out(out, cfg.overwrite, own="pretrain" if cfg.resume or not info.main else None)
    if cfg.resume and not has_ckpt and info.main:
        print(f"pmilab pretrain: no checkpoint in {out} yet; starting from step 0")
    if cfg.overwrite and info.main:
        _remove_earlier_run(out)
    if not has_ckpt:
        return out, None
    ckpt = load_checkpoint(out)
    changed = resume_changes(
        ckpt["config"], cfg, ckpt.get("world_size", 1), info.world, steps=False
    )
    if changed:
        raise InputError(
            f"--resume: the checkpoint in {out} was trained with other settings: "
            f"{'; '.join(changed)}; resume with its settings (--resume latest reads "
            f"{out}/config.json) or use another --out"
        )
    return out, ckpt


def check_resume_length(cfg: PretrainConfig, ckpt: dict, plan: RunPlan, info) -> None:
    """A resumed run may only grow; say how a longer one stretches the LR schedule."""
    old, step = ckpt["config"]["steps"], ckpt["step"]
    if cfg.steps < old:
        raise InputError(
            f"--resume: the checkpoint in {cfg.out} was trained with other settings: --steps "
            f"{old} (now {cfg.steps}; only an extension is allowed); --epochs may grow too"
        )
    if step > cfg.steps:
        raise InputError(f"--steps {cfg.steps} ends before the checkpoint's step {step}")
    if cfg.steps > old and info.main:
        w, c = ckpt["warmup"], plan.cooldown_steps
        print(
            f"pmilab pretrain: --resume extends the run from {old} to {cfg.steps} steps; the "
            f"{cfg.lr_scheduler} schedule now ends at step {cfg.steps} (LR at step {step}: "
            f"{lr_at(step, cfg, w, old, c):.3g} -> {lr_at(step, cfg, w, cfg.steps, c):.3g})"
        )


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


def load_train_data(cfg: PretrainConfig, info: distributed.DistInfo, prep: Preprocess):
    """Map-style data (rank 0 reads first: it generates a missing shapes cache once), or None."""
    sizes, keys = (cfg.shapes_train, cfg.shapes_test), csv_keys(cfg)
    data = load_data(cfg.data, "train", sizes, 0, cfg.progress, keys) if info.main else None
    if info.world > 1:
        dist.barrier()
    if not info.main:
        data = load_data(cfg.data, "train", sizes, 0, False, keys)
    first_decodable(data, prep)  # fails here, before training, if there is none
    return data


def check_shards(shards: list[str], image_size: Preprocess | int) -> None:
    """Fail before training when the shards hold no decodable (image, caption) sample."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the training stream warns about each, once
        prep = image_size.for_eval() if isinstance(image_size, Preprocess) else image_size
        items, skips = read_stream(shards, limit=1, image_size=prep)
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


@one_line_warnings("pmilab pretrain")
def train(cfg: PretrainConfig) -> dict:
    """Run (or resume) training; returns the summary written to OUT/summary.json.

    Warnings print as one line each (logs.one_line_warnings); the towers' flags and the
    similarity head are checked before anything is read, so a tower that cannot be built, or a
    head pretraining cannot feed, costs no data loading.
    """
    check_towers(cfg)
    head_inputs(cfg)
    info = distributed.detect()
    device = setup_device(cfg, info)
    distributed.init(info, device)
    precision = resolve_precision(cfg.precision, device)
    out, ckpt = prepare_out(cfg, info)
    prep = preprocess_for(cfg.preprocess, run_image_size(cfg, ckpt), cfg.aug)
    shards = shard_list(cfg)
    data = None
    if shards:
        check_shards(shards, prep)
    else:
        data = load_train_data(cfg, info, prep)
    plan = plan_run(cfg, None if shards else len(data), info.world)
    cfg.steps = plan.steps
    if ckpt is not None:
        check_resume_length(cfg, ckpt, plan, info)
    warmup = ckpt["warmup"] if ckpt is not None else cfg.effective_warmup()
    if info.main:
        if ckpt is None:
            cfg.warn_warmup()
        warn_unused(cfg)
    # every rank reads the held-out data, so that every rank fails alike on a bad one
    evals = InRunEval(cfg, plan, prep) if plan.val_every or plan.zeroshot_every else None
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
    collapse = CollapseWatch(warmup, cfg.steps, ckpt.get("collapse") if ckpt else None)
    if info.main:
        atomic.write_json(
            out / "config.json",
            {"pretrain": asdict(cfg), "model": asdict(model.cfg), "warmup_used": warmup},
        )
    ddp = torch.nn.parallel.DistributedDataParallel(model) if info.world > 1 else model
    loop = Loop(cfg, info, device, precision, tok, model, ddp, opt, out, warmup)
    loop.plan, loop.evals = plan, evals
    if loop.scaler is not None and ckpt is not None and ckpt.get("scaler"):
        loop.scaler.load_state_dict(ckpt["scaler"])  # the loss scale where the run stopped
    loop.skips, loop.events, loop.collapse = skips, events, collapse
    loop.reader_skips = Counter(data.skipped) if data is not None else Counter()
    loop.source = micro_batches(cfg, info, data, shards, prep, start, skips)
    return loop.run(start, elapsed)


def run_image_size(cfg: PretrainConfig, ckpt: dict | None) -> int:
    """The size the images are preprocessed to: the checkpoint's (a resume reads no pretrained
    folder again), --image-size, or a pretrained image tower's own size."""
    if ckpt is not None:
        return ckpt["model_config"]["image_size"]
    if not cfg.pretrained_image:
        return cfg.image_size
    own = pretrained_image_size(cfg.pretrained_image)
    if cfg.image_size and cfg.image_size != own:  # model.py says the same for a ModelConfig
        raise InputError(
            f"--image-size {cfg.image_size}: the pretrained image tower in "
            f"{cfg.pretrained_image} takes {own} px images (its config.json); drop --image-size "
            f"or pass --image-size {own}"
        )
    return own


def warn_unused(cfg: PretrainConfig) -> None:
    """open_clip ignores the cooldown flags under another schedule; pmilab says so, once."""
    if cfg.lr_scheduler == "const-cooldown":
        return
    given = [
        flag
        for flag, value, default in (
            ("--epochs-cooldown", cfg.epochs_cooldown, 0),
            ("--lr-cooldown-power", cfg.lr_cooldown_power, 1.0),
            ("--lr-cooldown-end", cfg.lr_cooldown_end, 0.0),
        )
        if value != default
    ]
    if given:
        warnings.warn(
            f"{', '.join(given)} only act with --lr-scheduler const-cooldown (now "
            f"{cfg.lr_scheduler}); ignored",
            stacklevel=2,
        )


def micro_batches(cfg, info, data, shards, prep: Preprocess, start, skips):
    """Micro-batches (images, captions) of steps start.. for this rank, in order."""
    if shards:
        stream = ShardStream(
            shards,
            prep,
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
        len(data),
        cfg.batch_size,
        cfg.accum_freq,
        cfg.seed,
        start,
        cfg.steps,
        info.rank,
        info.world,
        draws=prep.aug != "none",
    )
    loader = torch.utils.data.DataLoader(
        ImageTextDataset(data, prep.size, prep),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.workers,
        persistent_workers=False,
    )
    for images, idx, bad in loader:
        skip_undecodable(skips, data, bad)
        yield images, [data.captions[i] for i in idx]


# ---------------------------------------------------------------------------------------------
# collapse detection and Ctrl-C

# A collapsed run: its loss sits at ln N, the InfoNCE loss of constant logits over N pairs, and
# its logits are (nearly) constant. Logits with a standard deviation of at most 0.1 nats keep
# typical softmax probabilities within about 10% of uniform: the model prefers no partner over
# another. A learning model's logits spread by nats (measured on 32 coloured squares, batch 16:
# standard deviation 2.5 to 6 after 60 steps; near 0.03 in a WPSE run stuck at ln 16).
COLLAPSE_LOSS_TOL = 0.01  # nats: |loss - ln N|
COLLAPSE_LOGIT_STD = 0.1  # nats: standard deviation of the step's logit matrix
COLLAPSE_PATIENCE = 20  # consecutive post-warmup steps at ln N before the logits are looked at


class CollapseWatch:
    """The collapse rule (`fit` has its constant-logits check; this is pretraining's).

    After warmup, once the loss has stayed within COLLAPSE_LOSS_TOL of ln N (N pairs in the
    step) for COLLAPSE_PATIENCE consecutive steps (every step after warmup when the run has
    fewer), the logits of that step's last micro-batch are computed once more: if their standard
    deviation is at most COLLAPSE_LOGIT_STD, the run has collapsed. It is warned about once and
    recorded in summary.json (`collapsed`, `collapsed_at_step`); the run goes on (a run that
    leaves the plateau later keeps the record: its final loss tells). If the logits are not
    near-constant the count starts again, so a healthy run pays that extra forward rarely. The
    state is checkpointed, so a resumed run keeps the verdict.
    """

    def __init__(self, warmup: int, steps: int, state: dict | None = None) -> None:
        self.warmup, self.steps = warmup, steps
        state = state or {}
        self.streak, self.step = state.get("streak", 0), state.get("step")

    def needed(self) -> int:
        return max(1, min(COLLAPSE_PATIENCE, self.steps - self.warmup))

    def update(self, step: int, loss: float, n: int, logits) -> bool:
        """Step `step` (1-based) ended with `loss` over `n` pairs; `logits()` gives its logits.
        True the one time the run is found collapsed."""
        if self.step is not None or step <= self.warmup or n < 2:
            return False
        if abs(loss - math.log(n)) > COLLAPSE_LOSS_TOL:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak < self.needed():
            return False
        self.streak = 0
        if float(logits().detach().double().std()) > COLLAPSE_LOGIT_STD:
            return False
        self.step = step
        return True

    def state(self) -> dict:
        return {"streak": self.streak, "step": self.step}

    def summary(self) -> dict:
        if self.step is None:
            return {"collapsed": False}
        return {"collapsed": True, "collapsed_at_step": self.step}


class Interrupt:
    """Ctrl-C (SIGINT) while the loop runs: a flag, read between two steps (Loop.steps).

    The handler only sets the flag, so the step under way ends whole: AdamW updates its parameter
    groups one after another, and a KeyboardInterrupt between two of them would checkpoint a
    torn step. A second Ctrl-C stops at once (a plain KeyboardInterrupt, no checkpoint). Outside
    the main thread, or where SIGINT is ignored (a background job), nothing is installed.
    """

    def __init__(self) -> None:
        self.requested, self.previous = False, None

    def __enter__(self) -> Interrupt:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


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
        self.collapse = CollapseWatch(warmup, cfg.steps)
        self.t0, self.saved = time.perf_counter(), None
        self.plan = RunPlan(cfg.steps, None, cfg.ckpt_every, None, None, 0)  # train() sets it
        self.evals: InRunEval | None = None
        self.last_val: dict = {}
        # --precision amp: fp16 towers need dynamic loss scaling (runtime.precision)
        self.scaler = torch.amp.GradScaler(device.type) if needs_scaler(precision) else None

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
        scale = 1.0
        if self.scaler is not None:  # the current loss scale (initialised on first use)
            scale = float(self.scaler.scale(torch.ones((), device=self.device)))
        autocast = autocast_dtype(self.precision)
        loss = accumulate(
            self.model, self.ddp, micro, autocast, self.info.world > 1, scale=scale
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
        self.t0 = time.perf_counter() - elapsed
        self.saved = start if start > 0 else None  # the step of the checkpoint on disk
        if log is not None:
            names = self.evals.metric_names() if self.evals is not None else []
            log.hparams(asdict(cfg), ["train/loss"] + [f"val/{k}" for k in names])
        try:
            with Interrupt() as interrupt:
                loss, images_seen = self.steps(start, log, bar, interrupt)
        finally:
            bar.close()
            if log is not None:
                log.close()
        return self.summary(loss, time.perf_counter() - self.t0, elapsed, images_seen)

    def steps(self, start: int, log, bar, interrupt: Interrupt) -> tuple[float, int]:
        """Steps start..steps; (the last loss, images seen). Ctrl-C stops between two steps."""
        cfg = self.cfg
        images_seen, loss, window = 0, math.nan, Counter()
        for step in range(start, cfg.steps):
            if self.stop_requested(interrupt):
                self.interrupted(step)
            lr = lr_at(step, cfg, self.warmup, cfg.steps, self.plan.cooldown_steps)
            for g in self.opt.param_groups:
                g["lr"] = lr
            self.opt.zero_grad(set_to_none=True)
            t_start = time.perf_counter()
            try:
                micro = self.next_step_batches()
            except Exception:
                if interrupt.requested:  # a loader worker stopped by the same Ctrl-C
                    self.interrupted(step)
                raise
            t_data = time.perf_counter()
            step_loss = self.step_grads(micro)
            if step_loss is not None and not math.isfinite(step_loss):
                self.fail(step + 1, f"the loss is {step_loss}")
            n = sum(len(m[0]) for m in micro) * self.info.world
            if step_loss is not None:
                if self.scaler is not None:  # true gradients before clipping (open_clip's order)
                    self.scaler.unscale_(self.opt)
                if cfg.grad_clip_norm > 0:  # the gradients are the global batch's (DDP-averaged)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
                if self.scaler is not None:  # skips the step if a gradient overflowed
                    self.scaler.step(self.opt)
                    self.scaler.update()
                else:
                    self.opt.step()
                self.model.similarity.clamp_()
                loss = step_loss
                self.watch_collapse(step + 1, loss, n, micro)
            images_seen += n
            now = time.perf_counter()
            window.update(steps=1, samples=n, data_s=t_data - t_start, step_s=now - t_start)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                self.log_row(log, done, loss, lr, window, now - self.t0)
                window = Counter()
            if done % self.plan.ckpt_every == 0 or done == cfg.steps:
                self.checkpoint(done, time.perf_counter() - self.t0)
            self.evaluate(log, done)
        if interrupt.requested:  # during the last step: its checkpoint is written
            self.interrupted(cfg.steps)
        return loss, images_seen

    # -----------------------------------------------------------------------------------------
    # evaluation during training

    def evaluate(self, log, step: int) -> None:
        """--val-data / --zeroshot-frequency evaluations due after `step`: the main rank
        evaluates; under DDP the others wait for it at a barrier (only when one is due)."""
        if self.evals is None:
            return
        if self.info.main:
            cfg = self.cfg
            batch = cfg.batch_size * cfg.accum_freq * self.info.world
            row = self.evals.run(self.model, self.tok, step, batch)
            if row is not None:
                self.last_val.update(row)
                if log is not None:
                    log.write_val(row, scalars(row))
        if self.info.world > 1 and any(self.evals.due(step)):
            dist.barrier()

    # -----------------------------------------------------------------------------------------
    # Ctrl-C

    def stop_requested(self, interrupt: Interrupt) -> bool:
        """Whether any rank was interrupted; under DDP every rank learns it at the same step,
        so all of them write (and wait for) the same checkpoint."""
        flag = interrupt.requested
        if self.info.world > 1:
            t = torch.tensor([int(flag)], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def interrupted(self, step: int) -> None:
        """Checkpoint the `step` steps done (unless that checkpoint is on disk), then stop with
        KeyboardInterrupt, which the CLI turns into exit code 130."""
        if self.saved != step:
            self.checkpoint(step, time.perf_counter() - self.t0)
        if self.info.main:
            print(
                f"pmilab pretrain: interrupted at step {step} of {self.cfg.steps}; its checkpoint "
                f"is in {self.out}: continue with --resume",
                file=sys.stderr,
                flush=True,
            )
        raise KeyboardInterrupt

    # -----------------------------------------------------------------------------------------
    # collapse

    def watch_collapse(self, step: int, loss: float, n: int, micro: list[tuple]) -> None:
        """Feed the collapse rule (main rank: it writes the summary); warn once, when it fires."""
        if not self.info.main or not self.collapse.update(
            step, loss, n, lambda: self.logits(micro)
        ):
            return
        warnings.warn(
            f"the run has collapsed at step {step}: after warmup the loss stayed within "
            f"{COLLAPSE_LOSS_TOL} of ln {n} = {math.log(n):.4f} (the loss of constant logits) "
            f"for {self.collapse.needed()} step(s) and the logits are near-constant (standard "
            f"deviation <= {COLLAPSE_LOGIT_STD}); the towers are learning nothing. Lower --lr "
            f"(now {self.cfg.lr:g}) or check the data",
            RuntimeWarning,
            stacklevel=2,
        )

    @torch.no_grad()
    def logits(self, micro: list[tuple]) -> torch.Tensor:
        """The logit matrix of the step's last micro-batch, with the updated weights."""
        images, ids, mask = micro[-1]
        img, txt = self.model.encode_pair(images, ids, mask, autocast_dtype(self.precision))
        return self.model.logit_matrix(*img, *txt)

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
                    "scaler": self.scaler.state_dict() if self.scaler is not None else None,
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
                    "collapse": self.collapse.state(),
                },
                keep=self.cfg.keep_checkpoints,
            )
        self.saved = step
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
            **self.collapse.summary(),
        }
        if self.last_val:  # evaluation during training: the latest of each metric
            summary["val"] = self.last_val
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
