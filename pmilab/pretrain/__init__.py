"""Image-text pretraining with the lab's similarity heads (docs/theory.md T2, T3, T7).

Files, one idea each:
- config.py: `PretrainConfig` (every flag), the named presets (`--model ViT-B-16`), the resume rule;
- shapes.py / shapes_cache.py: the known-PMI shapes dataset (T7) and its on-disk cache;
- readers.py: `--data {shapes, digits, PATH.csv|.tsv, SHARDS}` -> ImageText; data.py: the dataset,
  the (seed, step) batch order and the SkipLog (each bad sample counted once, by identity);
- stream.py: webdataset shards streamed (split by node and worker, resampling, damaged shards);
- tokenizer.py: word-level or byte-level BPE (`tokenizers`), trained on the captions or loaded;
- towers.py: small CNN / ViT / Transformer towers and the point and point-set heads;
  hf_towers.py: transformers ViT, CLIP vision and CLIP text towers (config or local folder);
- model.py: towers + heads + `pmilab.similarity.{Linear, WPSE, KME}`; the loss is the local slab
  of `pmilab.runtime.distributed`; accum.py: exact gradient accumulation (feature caching);
- train.py / checkpoint.py / logs.py: `pmilab pretrain` (torchrun or SLURM DDP, AdamW
  warmup-cosine, the non-finite stop, atomic checkpoints kept k deep, exact resume, log.csv and
  TensorBoard);
- evaluate.py / report.py: `pmilab eval` (zero-shot mixtures, retrieval, probe, PMI errors).
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
