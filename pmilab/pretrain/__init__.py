"""Image-text pretraining with the lab's similarity heads (docs/theory.md T2, T3, T7).

Files, one idea each:
- config.py: `ModelFields` (the architecture's fields, one owner), `PretrainConfig` (every flag),
  the named presets (`--model ViT-B-32 | ViT-B-16 | ViT-L-14`), --config FILE, --resume latest,
  the resume rule; plan.py: the run's length and cadences (--epochs, --train-num-samples,
  --save-frequency) and open_clip's LR schedules (--lr-scheduler);
- preprocess.py: `--preprocess simple | clip` (transformers' CLIP image processor) and
  `--aug rrc` (RandomResizedCrop, seeded);
- shapes.py / shapes_cache.py: the known-PMI shapes dataset (T7) and its on-disk cache;
- readers.py: `--data {shapes, digits, PATH.csv|.tsv, SHARDS}` -> ImageText; data.py: the dataset,
  the (seed, step) batch order and the SkipLog (each bad sample counted once, by identity);
- stream.py: webdataset shards streamed (split by node and worker, resampling, damaged shards);
- tokenizer.py: word-level or byte-level BPE (`tokenizers`), trained on the captions or loaded;
- towers.py: small CNN / ViT / Transformer towers and the point and point-set heads;
  hf_towers.py: transformers ViT, CLIP vision and CLIP text towers (config or local folder);
- model.py: towers + heads + `pmilab.similarity.{Linear, WPSE, KME}`; the loss is the local slab
  of `pmilab.runtime.distributed`; accum.py: exact gradient accumulation (feature caching);
- train.py / checkpoint.py / logs.py: `pmilab pretrain` (torchrun or SLURM DDP, AdamW with
  warmup and an open_clip schedule, gradient clipping, the non-finite stop, atomic checkpoints
  kept k deep, exact resume, log.csv and TensorBoard with hyperparameters); val.py: evaluation
  during training (--val-data, --zeroshot-frequency);
- evaluate.py / report.py: `pmilab eval` (zero-shot mixtures, retrieval, probe, PMI errors);
- weights_openclip.py: open_clip / OpenAI state dicts in and out of the CLIP towers
  (`--pretrained FILE`); export.py: `pmilab export` (a transformers CLIPModel folder, or
  safetensors + head config).
"""

from pmilab.pretrain.evaluate import evaluate
from pmilab.pretrain.model import ModelConfig, build_model
from pmilab.pretrain.readers import load_data
from pmilab.pretrain.shapes import ShapesJoint
from pmilab.pretrain.train import PretrainConfig, train

__all__ = [
    "ModelConfig",
    "PretrainConfig",
    "ShapesJoint",
    "build_model",
    "evaluate",
    "load_data",
    "train",
]
