"""Image-text pretraining with the lab's similarity heads (docs/theory.md T2, T3, T7).

Files, one idea each:
- shapes.py / shapes_cache.py: the known-PMI shapes dataset (T7) and its on-disk cache;
- readers.py: `--data {shapes, digits, PATH.csv, SHARDS}` -> ImageText; data.py: the dataset,
  bad-sample handling and the (seed, step) batch order;
- tokenizer.py: a word-level `tokenizers` model trained on the captions;
- towers.py: CNN / ViT image towers, Transformer text tower, point and point-set heads;
- model.py: towers + heads + `pmilab.similarity.{Linear, WPSE, KME}`; the loss is the local slab
  of `pmilab.runtime.distributed`;
- train.py / checkpoint.py: `pmilab pretrain` (torchrun DDP, AdamW warmup-cosine, atomic
  checkpoints, exact resume);
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
