"""How long a pretraining run is, and what happens when: the run plan and the LR schedules.

- Length. `--steps N`, or open_clip's budget `--epochs E` of `--train-num-samples S` samples
  each (S defaults to a map-style data set's size; a shard stream needs it): an epoch is
  S // (global batch) optimizer steps, the global batch being batch-size x accum-freq x ranks
  (open_clip drops the last partial batch too), and the run is E epochs, E x S samples.
- Cadence in epochs: `--save-frequency` (checkpoints), `--val-frequency` and
  `--zeroshot-frequency` (evaluation during training) count epochs of that length, as in
  open_clip; `--ckpt-every` counts steps.
- LR schedules (`--lr-scheduler`, open_clip's `scheduler.py` meanings, linear warmup first):
  `cosine` decays to 0 at the last step (pmilab's `runtime.schedule.warmup_cosine`, unchanged);
  `const` stays at --lr; `const-cooldown` stays at --lr, then over the last `--epochs-cooldown`
  epochs falls to `--lr-cooldown-end` as (1 - e/E_c)^power (`--lr-cooldown-power`, 1: linear).
"""

from __future__ import annotations

from dataclasses import dataclass

from pmilab.errors import InputError
from pmilab.runtime.schedule import warmup_cosine


@dataclass(frozen=True)
class RunPlan:
    steps: int  # optimizer steps of the whole run
    steps_per_epoch: int | None  # None: no epoch length is known (shards, no --train-num-samples)
    ckpt_every: int
    val_every: int | None  # steps between evaluations on --val-data (None: none)
    zeroshot_every: int | None  # steps between zero-shot evaluations (None: none)
    cooldown_steps: int  # const-cooldown: the steps of the cooldown (else 0)

    def epoch(self, step: int) -> float | None:
        """Epochs done after `step` optimizer steps (None without an epoch length)."""
        return None if not self.steps_per_epoch else step / self.steps_per_epoch


def plan_run(cfg, n_samples: int | None, world: int) -> RunPlan:
    """The plan of `cfg` (a PretrainConfig) on data of `n_samples` samples (None: a stream).

    InputError (one line) when a setting counted in epochs has no epoch length, when an epoch
    would be shorter than one global batch, or when the cooldown does not fit in the run."""
    global_batch = cfg.batch_size * cfg.accum_freq * world
    per_epoch = cfg.train_num_samples or n_samples
    steps_per_epoch = None
    if per_epoch:
        steps_per_epoch = per_epoch // global_batch
        if steps_per_epoch < 1:
            source = "--train-num-samples" if cfg.train_num_samples else "the data set"
            raise InputError(
                f"an epoch ({source}: {per_epoch} samples) is shorter than one global batch of "
                f"{global_batch} (batch-size x accum-freq x ranks)"
            )

    def epochs_to_steps(name: str, epochs: int) -> int:
        if steps_per_epoch is None:
            raise InputError(
                f"{name} counts epochs, and a shard stream has no epoch length: pass "
                "--train-num-samples (samples per epoch), as in open_clip"
            )
        return epochs * steps_per_epoch

    steps = epochs_to_steps("--epochs", cfg.epochs) if cfg.epochs else cfg.steps
    ckpt_every = cfg.ckpt_every
    if cfg.save_frequency:
        ckpt_every = epochs_to_steps("--save-frequency", cfg.save_frequency)
    val_every = zeroshot_every = None
    if cfg.val_data:
        val_every = epochs_to_steps("--val-frequency", cfg.val_frequency)
    if cfg.zeroshot_frequency:
        zeroshot_every = epochs_to_steps("--zeroshot-frequency", cfg.zeroshot_frequency)
    cooldown = 0
    if cfg.lr_scheduler == "const-cooldown":
        cooldown = epochs_to_steps("--epochs-cooldown", cfg.epochs_cooldown)
        if cooldown > steps:
            raise InputError(
                f"--epochs-cooldown {cfg.epochs_cooldown} is {cooldown} steps, longer than the "
                f"run's {steps}"
            )
    return RunPlan(steps, steps_per_epoch, ckpt_every, val_every, zeroshot_every, cooldown)


def lr_at(step: int, cfg, warmup: int, steps: int, cooldown_steps: int = 0) -> float:
    """The learning rate of 0-based `step` under cfg.lr_scheduler (open_clip's schedules)."""
    if cfg.lr_scheduler == "cosine":
        return warmup_cosine(step, cfg.lr, warmup, steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.lr_scheduler == "const":
        return cfg.lr
    start = steps - cooldown_steps  # const-cooldown
    if step < start:
        return cfg.lr
    e, es = step - start, max(steps - start, 1)
    decay = max(0.0, 1 - e / es) ** cfg.lr_cooldown_power
    return decay * (cfg.lr - cfg.lr_cooldown_end) + cfg.lr_cooldown_end
