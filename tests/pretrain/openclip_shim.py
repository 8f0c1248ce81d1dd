"""open_clip's own model code on CPU torch, for test_weights_openclip.py (run as a subprocess).

torchvision's PyPI wheels carry C operators built against CUDA torch; on this CPU torch they do
not load, and `import torchvision` then fails at its first `register_fake("torchvision::nms")`.
`install()` defines the operators it registers fakes for on import (no-op schemas: open_clip's
CLIP models never call them), so open_clip's pure-Python model code imports.

The packages live outside the venv (`.venv/openclip-test`, installed `--no-deps --target` by
`make setup-dev`): a torchvision beside transformers makes `import transformers.CLIPTextModel`
fail in every pmilab command, so the test runs open_clip in a child process with that folder on
its path, and pmilab's process never sees torchvision.

`python openclip_shim.py OUT_DIR` builds open_clip's ViT-B-16 with random weights (no download:
pretrained=None), saves its state dict (OUT_DIR/vit_b_16.pt, torch.save) and, in
OUT_DIR/reference.pt, two random 224 px images, two token rows (SOT, tokens, EOT, zeros: one
short, one filling the 77-token context), the rows' lengths, and open_clip's image and text
features (before normalising) and logits.
"""

from __future__ import annotations

import sys
from pathlib import Path

# the operators torchvision registers fake (meta) kernels for when it is imported
TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARY = []  # keeps the torch.library.Library alive


def install() -> None:
    """Define torchvision's operators (no-op schemas) unless its C extension loads (it does
    with the CUDA torch its wheel was built for: then nothing is stubbed)."""
    import importlib.util

    import torch

    if _LIBRARY:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return  # no torchvision: `import open_clip` says so itself
    for so in Path(spec.origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(str(so))
            return  # the real operators
        except OSError:
            pass
    lib = torch.library.Library("torchvision", "DEF")
    for schema in TORCHVISION_OPS:
        lib.define(schema)
    _LIBRARY.append(lib)


def main(out: Path) -> None:
    install()
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    # random logit scale and a non-trivial layer norm, so that a dropped tensor shows
    with torch.no_grad():
        model.logit_scale.fill_(3.1)
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    torch.save(model.state_dict(), out / "vit_b_16.pt")
    images = torch.randn(2, 3, 224, 224)
    lengths = torch.tensor([6, 77])
    ids = torch.zeros(2, 77, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0] = 49406
        ids[row, 1 : n - 1] = torch.randint(1, 49406, (n - 2,))
        ids[row, n - 1] = 49407
    with torch.no_grad():
        image_features = model.encode_image(images)
        text_features = model.encode_text(ids)
        img_n, txt_n, scale = model(images, ids)
        logits = scale * img_n @ txt_n.T
    torch.save(
        {
            "images": images,
            "ids": ids,
            "lengths": lengths,
            "image_features": image_features,
            "text_features": text_features,
            "logits": logits,
            "open_clip": open_clip.__version__,
        },
        out / "reference.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
