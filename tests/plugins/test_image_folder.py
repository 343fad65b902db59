"""`image_folder`: class folders of PNG / JPEG files read lazily with Pillow, split by folders or by a
seeded per-class shuffle, resized, normalised with statistics of the training split; `root` is read
from the spec's folder. A spec training on PNGs written here runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stagedsl.cli.app import run_cli
from stagedsl.errors import RunError

PIL = pytest.importorskip("PIL.Image")


def write_images(folder, classes=("closed", "open"), per_class=6, size=(10, 12), suffix=".png"):
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = 40 + 160 * label  # the classes differ in brightness
            pixels = np.clip(base + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
            PIL.fromarray(pixels).save(folder / name / f"{i:03d}{suffix}")


def test_a_seeded_split_of_class_folders(registry, tmp_path):
    write_images(tmp_path / "eyes", per_class=10)
    entry = registry.get("datasets", "image_folder")
    args = {"root": str(tmp_path / "eyes"), "size": 8, "val_fraction": 0.2, "test_fraction": 0.1, "seed": 3}
    splits = registry.build("datasets", "image_folder", args)
    assert entry.meta.sizes(**args) == {"train": 14, "val": 4, "test": 2}
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 4, 2)
    assert splits.stats["classes"] == ["closed", "open"] and splits.stats["size"] == [8, 8]
    x, y = splits.train[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    batch = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    assert batch.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # normalised by the training split's own statistics
    assert batch.std(dim=(0, 2, 3), correction=0).sub(1).abs().max() < 1e-3
    again = registry.build("datasets", "image_folder", args)
    assert [f for f, _ in again.val.items] == [f for f, _ in splits.val.items]  # the split is seeded
    assert not {f for f, _ in splits.val.items} & {f for f, _ in splits.train.items}


def test_split_folders_and_grayscale(registry, tmp_path):
    write_images(tmp_path / "data" / "train", per_class=4)
    write_images(tmp_path / "data" / "val", per_class=2, suffix=".jpg")
    splits = registry.build("datasets", "image_folder", {"root": str(tmp_path / "data"), "mode": "L", "size": [6, 5]})
    assert splits.stats["layout"] == "split folders" and splits.stats["counts"] == {"train": 8, "val": 4}
    assert splits.val[0][0].shape == (1, 6, 5) and len(splits.stats["mean"]) == 1
    (tmp_path / "data" / "val" / "blinking").mkdir()
    with pytest.raises(RunError, match="class folders the training split lacks: blinking"):
        registry.build("datasets", "image_folder", {"root": str(tmp_path / "data")})


def test_a_spec_trains_on_an_image_folder_beside_it(registry, tmp_path, monkeypatch):
    project = tmp_path / "project"
    write_images(project / "crops", per_class=12)
    spec = project / "spec.toml"
    spec.write_text('''
[run]
name = "eyes"
device = "cpu"

[model]
use = "ocec_net"
in_channels = 3
size = 8
width = 4
embed = 8

[data]
use = "image_folder"
root = "crops"          # read from this file's folder
size = 8
val_fraction = 0.25
batch_size = 6
workers = 1

[[stage]]
name = "all"
epochs = 2
lr = 0.01
loss = "cross_entropy"
metrics = ["accuracy"]
''')
    monkeypatch.chdir(tmp_path)
    assert run_cli(["plan", str(spec), "--json"]) == 0
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "run")]) == 0
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["data"]["args"]["root"] == str(project / "crops") and plan["data"]["sizes"] == {"train": 18, "val": 6}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stages"]["all"]["steps"] == 6
    assert "val/accuracy" in summary["stages"]["all"]["last_values"]
    # the training split's statistics travel with the model package (seed 001's normalization.json)
    assert run_cli(["export", str(tmp_path / "run"), "--format", "package"]) == 0
    preprocessing = json.loads((tmp_path / "run" / "export" / "package" / "preprocessing.json").read_text())
    stats = preprocessing["stats"]
    assert stats["classes"] == ["closed", "open"] and len(stats["mean"]) == 3 and len(stats["std"]) == 3
    assert stats["mode"] == "RGB" and stats["size"] == [8, 8]
