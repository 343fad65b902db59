"""Engine overhead: `run_plan` against a hand-written loop over the same pieces.

Cases (one process, ``torch.set_num_threads(1)``):

  a  tiny MLP 32-64-64-1, batch 64, a user Dataset (plain __getitem__) through a
     DataLoader, both sides                                     target ratio <= 1.05
  b  medium MLP 512-2048-2048-10, batch 64, same data path       target ratio <= 1.02
  c  tiny MLP with the data as a built-in TensorSplit (engine: batched fetch) against
     the hand DataLoader loop of case a                          target ratio <= 0.80
     and, for reference, a hand loop over pre-batched tensors (the bound on any loader)

Both sides use the same model class, AdamW (the built-in ``adamw`` factory; the hand
loop calls torch.optim.AdamW with the same settings), MSE and DataLoader settings. The
engine runs the default pieces a spec gets: scheduler ``constant`` (stepped every step),
loss logging every window (100 steps; 10 for the medium model: one sync, a
metrics.jsonl line and TensorBoard scalars), evaluation and checkpoints only at the
stage end (outside the timed windows).

Timing is interleaved, because a shared machine's speed drifts by 10-20 % over
seconds: a callback at each STEP_END runs the same number of steps of the hand loop
(which keeps its own model, optimizer and DataLoader iterator) and times both sides'
windows, so engine and hand loop alternate every window and each engine window is
compared with the hand window just before it. Stage setup, the final evaluation and
the first window of each side are excluded. The figure is the median of the paired
window ratios (wall clock); the process-CPU-time ratio is printed beside it. Usage::

    python benchmarks/overhead.py [--quick] [--repeats N] [--cases abc]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from stagedsl import Callback, DataSplits, Registry, TensorSplit, hookimpl  # noqa: E402
from stagedsl.engine.runner import run_plan  # noqa: E402
from stagedsl.plan.model import (  # noqa: E402
    CheckpointPlan,
    DataPlan,
    EvalPlan,
    GroupPlan,
    LossPlan,
    LossTerm,
    PieceRef,
    Plan,
    RunPlan,
    StagePlan,
)

BATCH = 64
LR = 1e-3
WEIGHT_DECAY = 0.01  # the adamw factory's default


def clocks() -> tuple[float, float]:
    """(wall, process CPU) seconds. CPU time does not count time the process waits for a
    core, so it is the fairer clock on a machine other work shares (or a VM with steal)."""
    return time.perf_counter(), time.process_time()


# -- shared pieces ---------------------------------------------------------------------------
def mlp(widths: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def tensors(n: int, features: int, outputs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randn(n, outputs, generator=g)
    return x, y


class UserDataset(torch.utils.data.Dataset):
    """What a user writes: one sample per __getitem__."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def user_data(n: int, features: int, outputs: int) -> DataSplits:
    return DataSplits(train=UserDataset(*tensors(n, features, outputs)), val=UserDataset(*tensors(256, features, outputs, 1)))


def tensor_data(n: int, features: int, outputs: int) -> DataSplits:
    return DataSplits(train=TensorSplit(*tensors(n, features, outputs)), val=TensorSplit(*tensors(256, features, outputs, 1)))


class BenchPieces:
    """The benchmark's model and datasets, registered like any plugin."""

    @hookimpl
    def register_models(self, register):
        register("bench_mlp", mlp)

    @hookimpl
    def register_datasets(self, register):
        register("bench_user_data", user_data)
        register("bench_tensor_data", tensor_data)


# -- the hand-written side ------------------------------------------------------------------------
class HandLoop:
    """The loop a user writes: for each batch of the DataLoader, forward, loss, backward, step.

    `run(k)` does the next k steps (epochs restart as in ``for epoch ...: for x, y in loader``).
    """

    def __init__(self, widths: list[int], n: int, *, prebatched: bool = False, device: str = "cpu", batch: int = BATCH,
                 autocast_dtype: torch.dtype | None = None, fused: bool | None = None):
        torch.manual_seed(0)
        self.device = torch.device(device)
        self.model = mlp(widths).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=fused)
        self.loss_fn = nn.MSELoss()
        self.autocast_dtype = autocast_dtype
        x, y = tensors(n, widths[0], widths[-1])
        if self.device.type == "cuda":  # data already on the GPU, indexed with a random permutation each epoch
            x, y = x.to(self.device), y.to(self.device)
            generator = torch.Generator().manual_seed(0)

            def gpu_batches():
                order = torch.randperm(n, generator=generator).to(self.device)
                for s in range(0, n - batch + 1, batch):
                    yield x[order[s:s + batch]], y[order[s:s + batch]]

            self.source = gpu_batches
        elif prebatched:
            batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, n - batch + 1, batch)]
            self.source = lambda: batches
        else:
            loader = torch.utils.data.DataLoader(UserDataset(x, y), batch_size=batch, shuffle=True, drop_last=True,
                                                 generator=torch.Generator().manual_seed(0))
            self.source = lambda: loader
        self.batches = iter(self.source())
        self.model.train()

    def run(self, k: int) -> None:
        model, optimizer, loss_fn = self.model, self.optimizer, self.loss_fn
        for _ in range(k):
            try:
                inputs, target = next(self.batches)
            except StopIteration:
                self.batches = iter(self.source())
                inputs, target = next(self.batches)
            if self.autocast_dtype is None:
                loss = loss_fn(model(inputs), target)
            else:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    loss = loss_fn(model(inputs), target)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


# -- the engine side, interleaved with the hand loops ---------------------------------------------
class Interleave(Callback):
    """At each STEP_END (log cadence) run `every` steps of each hand loop, timing each side.

    The engine's window runs from the end of one callback to the start of the next (its
    log work included); the hand loops run inside the callback. Engine and hand loops so
    alternate every `every` steps and see the same machine; the first window of each
    side is warm-up and dropped.
    """

    def __init__(self, hands: dict[str, HandLoop], every: int):
        self.hands, self.every = hands, every
        self.times: dict[str, list[tuple[float, float]]] = {"engine": [], **{name: [] for name in hands}}
        self._resumed: tuple[float, float] | None = None

    def step_end(self, state) -> None:
        now = clocks()
        if self._resumed is not None:
            self.times["engine"].append((now[0] - self._resumed[0], now[1] - self._resumed[1]))
        for name, hand in self.hands.items():
            start = clocks()
            hand.run(self.every)
            end = clocks()
            self.times[name].append((end[0] - start[0], end[1] - start[1]))
        self._resumed = clocks()

    def per_step(self) -> dict[str, list[tuple[float, float]]]:
        """Per-step (wall, cpu) seconds of each window after the warm-up ones."""
        engine = self.times["engine"][1:]
        out = {"engine": [(w / self.every, c / self.every) for w, c in engine]}
        for name in self.hands:  # hand window i ran just before engine window i
            out[name] = [(w / self.every, c / self.every) for w, c in self.times[name][1:len(engine) + 1]]
        return out


def engine_plan(widths: list[int], dataset: str, n: int, steps: int, log_every: int, out: str, *, device: str = "cpu",
                precision: str = "32", batch: int = BATCH) -> Plan:
    parameters = {name: int(p.numel()) for name, p in mlp(widths).named_parameters()}  # what compile_plan resolves
    names = tuple(parameters)
    stage = StagePlan(
        index=0, name="train", steps=steps, epochs=None, lr=LR, trainable=names, frozen=(), frozen_norm="eval",
        groups=(GroupPlan("default", names, LR),),
        optimizer=PieceRef("adamw", {}), scheduler=PieceRef("constant", {}), scheduler_monitor=None,
        loss=LossPlan("sum", (LossTerm("mse"),)), metrics=(), eval=EvalPlan(every=None), log_every=log_every,
        checkpoint=CheckpointPlan(),
    )
    return Plan(
        run=RunPlan(name="bench", seed=0, device=device, precision=precision, out=out),
        model=PieceRef("bench_mlp", {"widths": widths}),
        data=DataPlan(name=dataset, args={"n": n, "features": widths[0], "outputs": widths[-1]}, batch_size=batch,
                      eval_batch_size=256, workers=0, shuffle=True, drop_last=True),
        stages=(stage,),
        parameters=parameters,
    )


def interleaved(registry: Registry, plan: Plan, hands: dict[str, HandLoop], every: int) -> dict[str, list[tuple[float, float]]]:
    """Run `plan` with the hand loops interleaved at its log cadence; per-step window times of each side."""
    clock = Interleave(hands, every)
    devnull = open(os.devnull, "w")
    stderr, sys.stderr = sys.stderr, devnull  # progress lines off the table
    try:
        run_plan(plan, registry=registry, callbacks=[clock])
    finally:
        sys.stderr = stderr
        devnull.close()
    return clock.per_step()


def time_lightning(widths: list[int], n: int, steps: int, log_every: int) -> tuple[float, float] | None:
    """Lightning on the same pieces, if it is installed."""
    try:
        import lightning as L  # noqa: N812
    except ImportError:
        try:
            import pytorch_lightning as L  # noqa: N812
        except ImportError:
            return None

    marks: list[tuple[float, float]] = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(widths)

        def training_step(self, batch, _):
            if self.global_step in (2 * log_every, steps - 1):
                marks.append(clocks())
            inputs, target = batch
            return nn.functional.mse_loss(self.net(inputs), target)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    x, y = tensors(n, widths[0], widths[-1])
    loader = torch.utils.data.DataLoader(UserDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=log_every)
    trainer.fit(Module(), loader)
    if len(marks) < 2:
        return None
    count = steps - 1 - 2 * log_every
    return (marks[-1][0] - marks[0][0]) / count, (marks[-1][1] - marks[0][1]) / count


# -- main --------------------------------------------------------------------------------------
TARGETS = {"a": 1.05, "b": 1.02, "c": 0.80}
LABELS = {
    "a": "tiny MLP 32-64-64-1, user Dataset + DataLoader",
    "b": "MLP 512-2048-2048-10, user Dataset + DataLoader",
    "c": "tiny MLP, engine TensorSplit vs hand DataLoader",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="engine runs per case (each holds many windows)")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, not for the record)")
    parser.add_argument("--cases", default="abc", help="which cases to run (default abc)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = Registry.load(autoload=False, plugins=[("bench", BenchPieces())])

    tiny, medium = [32, 64, 64, 1], [512, 2048, 2048, 10]
    setups = {  # widths, dataset, samples, steps, window
        "a": (tiny, "bench_user_data", 8192, 1000 if args.quick else 3000, 100),
        "b": (medium, "bench_user_data", 4096, 60 if args.quick else 200, 10),
        "c": (tiny, "bench_tensor_data", 8192, 1000 if args.quick else 3000, 100),
    }
    windows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for _ in range(args.repeats):
        for name in args.cases:
            widths, dataset, n, steps, every = setups[name]
            hands = {"hand": HandLoop(widths, n)}
            if name == "c":
                hands["prebatched"] = HandLoop(widths, n, prebatched=True)
            with tempfile.TemporaryDirectory() as out:
                result = interleaved(registry, engine_plan(widths, dataset, n, steps, every, out), hands, every)
            for side, values in result.items():
                windows.setdefault(name, {}).setdefault(side, []).extend(values)

    def median(name: str, side: str, clock: int) -> float:
        return statistics.median(v[clock] for v in windows[name][side])

    def paired(name: str, side: str, clock: int) -> list[float]:
        return [e[clock] / h[clock] for e, h in zip(windows[name]["engine"], windows[name][side])]

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, {args.repeats} engine run(s) per case; "
          f"engine and hand loop alternate every window (100 steps tiny, 10 medium); medians over windows")
    print(f"{'case':<4} {'what':<50} {'hand ms/step':>12} {'engine ms/step':>14} {'ratio':>6} {'cpu-clock':>9} {'windows':>7} {'target':>7}")
    for name in windows:
        hand, engine = median(name, "hand", 0) * 1e3, median(name, "engine", 0) * 1e3
        ratio = statistics.median(paired(name, "hand", 0))
        cpu_ratio = statistics.median(paired(name, "hand", 1))
        mark = "ok" if ratio <= TARGETS[name] else "MISS"
        print(f"{name:<4} {LABELS[name]:<50} {hand:>12.4f} {engine:>14.4f} {ratio:>6.3f} {cpu_ratio:>9.3f} "
              f"{len(windows[name]['engine']):>7} {'<=' + str(TARGETS[name]):>7} {mark}")
    for name in windows:
        ratios = paired(name, "hand", 0)
        if len(ratios) >= 2:
            low, middle, high = statistics.quantiles(ratios, n=4)
            print(f"     case {name}: paired window ratios, quartiles {low:.3f} / {middle:.3f} / {high:.3f}")
    if "c" in windows:
        bound = median("c", "prebatched", 0) * 1e3
        print(f"     pre-batched hand loop (no loader at all): {bound:.4f} ms/step = "
              f"{statistics.median(paired('c', 'hand', 0)) / statistics.median(paired('c', 'prebatched', 0)):.3f} x the hand "
              f"DataLoader loop; engine (TensorSplit) = {statistics.median(paired('c', 'prebatched', 0)):.3f} x the pre-batched loop")
    if "a" in windows:
        lightning = time_lightning(tiny, 8192, 2000, 100)
        if lightning is None:
            print("     lightning: not installed, not measured")
        else:
            print(f"     lightning on case a (one separate run, not interleaved): {lightning[0] * 1e3:.4f} ms/step = "
                  f"{lightning[0] / median('a', 'hand', 0):.3f} x the hand loop's median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
