"""Trainer helpers shared by `training` (the lab's `fit`) and `pretrain` (image-text training).

One owner per rule (docs/architecture.md), in the spirit of open_clip_train's `scheduler.py`,
`precision.py` and `distributed.py`:
- `schedule`:    the learning-rate schedule (linear warmup, then cosine decay to 0);
- `optim`:       AdamW and its weight-decay grouping rule;
- `device`:      "auto" / "cpu" / "cuda:N" -> a torch.device, with one clear error;
- `precision`:   fp32 / bf16 autocast / fp64, and the autocast context the encoders run in;
- `distributed`: rank and world size, the all-gather with gradients, and the local slab of the
                 symmetric InfoNCE (built on `pmilab.losses`).
"""
