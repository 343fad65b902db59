"""Seed 004's open/closed-eye classifier: the `ocec_net` model, the `ocec_eyes` dataset and
the `cosface` loss of its margin head.

The network (``_network``), the eye-crop drawing (``_eyes``) and the loss module
(``_cosface``) are imported only when a factory is called.
"""

from stagedsl import DataSplits, TensorSplit, hookimpl
from stagedsl_plugins._splits import split_counts


def ocec_net(in_channels: int = 1, size: int = 24, width: int = 16, embed: int = 32, num_classes: int = 2, scale: float = 16.0):
    """Eye-state CNN: backbone (BatchNorm conv blocks) -> head (embedding) -> margin_head (scale*cos logits)."""
    from stagedsl_plugins.systems.ocec._network import OCECNet

    return OCECNet(in_channels, size, width, embed, num_classes, scale)


def ocec_eyes_sizes(n_train: int = 2048, n_val: int = 512, size: int = 24, seed: int = 0, noise: float = 0.05, hard_fraction: float = 0.25) -> dict:
    """Split lengths of `ocec_eyes` (nothing drawn)."""
    return split_counts(n_train, n_val)


def ocec_eyes(n_train: int = 2048, n_val: int = 512, size: int = 24, seed: int = 0, noise: float = 0.05, hard_fraction: float = 0.25):
    """Procedurally drawn grayscale eye crops [1, size, size]; target int64, 1 open / 0 closed.

    Deterministic given ``seed``; train and validation crops come from independent random streams.
    """
    import numpy as np
    import torch

    from stagedsl_plugins.systems.ocec._eyes import THRESHOLD, draw_eyes

    counts = split_counts(n_train, n_val)
    splits = {}
    for index, (split, count) in enumerate(counts.items()):
        images, labels = draw_eyes(count, size, np.random.default_rng([seed, index]), noise, hard_fraction)
        splits[split] = TensorSplit(torch.from_numpy(images), torch.from_numpy(labels))
    train = splits["train"]
    stats = {
        "classes": ["closed", "open"],
        "mean": float(train.inputs.mean()),
        "std": float(train.inputs.std()),
        "positive_fraction": float(train.target.float().mean()),
        "openness_threshold": THRESHOLD,
    }
    return DataSplits(train=train, val=splits.get("val"), stats=stats)


def cosface(margin: float = 0.35, scale: float = 16.0, label_smoothing: float = 0.0):
    """CosFace: CE after subtracting scale*margin from the target's scale*cos logit (scale must match the model's)."""
    from stagedsl_plugins.systems.ocec._cosface import CosFaceLoss

    return CosFaceLoss(margin, scale, label_smoothing)


@hookimpl
def register_models(register):
    """Register `ocec_net`."""
    register("ocec_net", ocec_net)


@hookimpl
def register_datasets(register):
    """Register `ocec_eyes` with its `sizes` function."""
    register("ocec_eyes", ocec_eyes, sizes=ocec_eyes_sizes)


@hookimpl
def register_losses(register):
    """Register `cosface`."""
    register("cosface", cosface)
