"""Seed 001's mesh pieces: the `mesh_fields` solver and dataset, the `mesh_gnn` model, the
mesh losses, the `relative_l1` metric and `specs/mesh.toml`."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stagedsl import DataSplits, Registry, TensorSplit
from stagedsl.cli.app import app
from stagedsl_plugins.systems.mesh import _data as mesh_data

SMALL = {"n_train": 6, "n_val": 3, "nodes_per_side": 5}
MESH_LOSSES = ("smoothness", "gradient_consistency", "curvature")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: torch's intra-op threads only add overhead, and they stall
    (10x slower) when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


@pytest.fixture(scope="module")
def small(registry):
    return registry.get("datasets", "mesh_fields").factory(**SMALL)


def split_equal(a: TensorSplit, b: TensorSplit) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.inputs, b.inputs)) and torch.equal(a.target, b.target)


# -- solver ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def solved():
    return mesh_data.generate(4, 6, 0.2, np.random.default_rng(3))


def test_triangulation_is_valid_and_covers_the_square(solved):
    area, _ = mesh_data.triangle_geometry(solved["points"], solved["triangles"])
    assert (area > 0).all()  # counter-clockwise, none degenerate
    np.testing.assert_allclose(area.sum(1), 1.0, rtol=1e-12)
    nodes, edges = mesh_data.counts(6)
    assert solved["edges"].shape == (4, 2, edges) and solved["points"].shape == (4, nodes, 2)
    # every triangle side is an edge of the mesh, and every edge a triangle side
    for edges_s, triangles_s in zip(solved["edges"], solved["triangles"]):
        listed = {frozenset(e) for e in edges_s.T.tolist()}
        sides = {frozenset((t[a], t[b])) for t in triangles_s.tolist() for a, b in ((0, 1), (1, 2), (2, 0))}
        assert listed == sides and len(listed) == edges


def test_solution_satisfies_the_discrete_equation(solved):
    matrix, u, mass, source = solved["stiffness"], solved["u"], solved["mass"], solved["source"]
    inner = ~solved["boundary"]
    np.testing.assert_allclose(matrix, np.swapaxes(matrix, 1, 2), atol=1e-12)  # symmetric
    np.testing.assert_allclose(matrix.sum(-1), 0.0, atol=1e-10)  # constants are in the kernel
    residual = np.einsum("snm,sm->sn", matrix, u) - mass * source
    assert np.abs(residual[:, inner]).max() < 1e-10 * np.abs(mass * source).max()
    np.testing.assert_array_equal(u[:, ~inner], solved["boundary_values"][:, ~inner])


def test_solver_is_exact_on_linear_fields():
    """P1 elements reproduce a linear solution of the Laplace equation (f = 0, kappa = 1) exactly."""
    rng = np.random.default_rng(0)
    points = mesh_data.jittered_points(6, 2, 0.2, rng)
    _, triangles = mesh_data.grid_topology(6, rng.random((2, 25)) < 0.5)
    exact = 0.3 + 1.7 * points[..., 0] - 0.4 * points[..., 1]
    matrix = mesh_data.stiffness(points, triangles, np.ones(triangles.shape[:2]))
    u = mesh_data.solve_dirichlet(matrix, np.zeros(exact.shape), mesh_data.boundary_mask(6), exact)
    np.testing.assert_allclose(u, exact, atol=1e-12)


def test_edge_targets_are_differences_gradients_and_conserved_fluxes(solved):
    edges, u, targets = solved["edges"], solved["u"], solved["targets"]
    tail, head = edges[:, 0], edges[:, 1]
    difference = np.take_along_axis(u, head, 1) - np.take_along_axis(u, tail, 1)
    np.testing.assert_allclose(targets[..., 0], difference)
    np.testing.assert_allclose(targets[..., 1], difference / solved["edge_features"][..., 0])
    outflow = np.zeros_like(u)
    for s in range(len(u)):  # sum of the fluxes leaving each node
        np.add.at(outflow[s], tail[s], targets[s, :, 2])
        np.add.at(outflow[s], head[s], -targets[s, :, 2])
    inner = ~solved["boundary"]
    np.testing.assert_allclose(outflow[:, inner], (solved["mass"] * solved["source"])[:, inner], atol=1e-10)


# -- dataset --------------------------------------------------------------------------
def test_dataset_is_deterministic_per_seed_and_sizes_match(registry, small):
    entry = registry.get("datasets", "mesh_fields")
    assert isinstance(small, DataSplits) and small.test is None
    assert entry.meta["sizes"](**SMALL) == {"train": len(small.train), "val": len(small.val)} == {"train": 6, "val": 3}
    assert split_equal(small.train, entry.factory(**SMALL).train)
    assert not split_equal(small.train, entry.factory(**SMALL, seed=1).train)
    assert entry.meta["sizes"](n_train=5, n_val=0) == {"train": 5}
    with pytest.raises(ValueError, match="jitter"):
        entry.meta["sizes"](jitter=0.3)


def test_default_dataset_sizes_match(registry):
    entry = registry.get("datasets", "mesh_fields")
    data = entry.factory()
    assert entry.meta["sizes"]() == {"train": len(data.train), "val": len(data.val)} == {"train": 128, "val": 32}


def test_batches_shapes_and_normalisation(small):
    (nodes, edges, edge_index), target = small.train[[0, 2, 5]]
    n_nodes, n_edges = mesh_data.counts(5)
    assert nodes.shape == (3, n_nodes, 6) and edges.shape == (3, n_edges, 3) and target.shape == (3, n_edges, 3)
    assert edge_index.shape == (3, 2, n_edges) and edge_index.dtype == torch.int64
    assert nodes.dtype == edges.dtype == target.dtype == torch.float32
    train_nodes, train_edges, _ = small.train.inputs
    torch.testing.assert_close(train_nodes.mean((0, 1)), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(small.train.target.std((0, 1), correction=0), torch.ones(3), atol=1e-5, rtol=0)
    assert train_nodes[..., 0].std(correction=0).item() == pytest.approx(train_nodes[..., 1].std(correction=0).item(), rel=0.2)  # one shared std


def test_stats_are_plain_lists_that_undo_the_normalisation(small):
    stats = small.stats
    json.dumps(stats)  # plain data, as the package exporter saves it
    assert stats["targets"] == ["potential_difference", "gradient", "flux"] and len(stats["target_std"]) == 3
    assert len(stats["node_mean"]) == len(stats["node_features"]) == 6 and stats["node_std"][0] == stats["node_std"][1]
    _, edges, _ = small.val.inputs
    target = small.val.target * torch.tensor(stats["target_std"]) + torch.tensor(stats["target_mean"])
    length = edges[..., 0] * stats["edge_std"][0] + stats["edge_mean"][0]
    torch.testing.assert_close(target[..., 1], target[..., 0] / length, rtol=1e-4, atol=1e-4)


def test_fourier_features_and_target_count(registry):
    data = registry.get("datasets", "mesh_fields").factory(n_train=2, n_val=0, nodes_per_side=4, targets=4, fourier_features=3)
    assert data.val is None and data.train.inputs[0].shape[-1] == 6 + 2 * 3 and data.train.target.shape[-1] == 4
    assert len(data.stats["fourier_frequencies"]) == 3 and data.stats["targets"][-1] == "potential_mean"


# -- model ----------------------------------------------------------------------------
def test_model_builds_on_meta_and_runs(registry, small):
    factory = registry.get("models", "mesh_gnn").factory
    with torch.device("meta"):
        meta = factory(hidden=8, layers=2)
    tops = {name.split(".")[0] for name, _ in meta.named_parameters()}
    assert tops == {"node_encoder", "edge_encoder", "processor", "edge_decoder"}
    assert all(p.is_meta for p in meta.parameters())
    torch.manual_seed(0)
    model = factory(hidden=8, layers=2)
    inputs, target = small.train[[0, 1, 2, 3]]
    output = model(*inputs)
    assert output.shape == target.shape and torch.isfinite(output).all()


def test_model_is_equivariant_to_node_and_edge_relabelling(registry, small):
    torch.manual_seed(0)
    model = registry.get("models", "mesh_gnn").factory(hidden=8, layers=3).eval()
    (nodes, edges, edge_index), _ = small.train[[0, 1]]
    n_nodes, n_edges = nodes.shape[1], edges.shape[1]
    generator = torch.Generator().manual_seed(1)
    order = torch.randperm(n_nodes, generator=generator)  # new node k is old node order[k]
    renamed = torch.empty_like(order)
    renamed[order] = torch.arange(n_nodes)
    with torch.no_grad():
        expected = model(nodes, edges, edge_index)
        relabelled = model(nodes[:, order], edges, renamed[edge_index])
        shuffle = torch.randperm(n_edges, generator=generator)
        reordered = model(nodes, edges[:, shuffle], edge_index[:, :, shuffle])
    torch.testing.assert_close(relabelled, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reordered, expected[:, shuffle], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_model_exports_to_onnx(registry, small, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from stagedsl.export.onnx_io import export_onnx

    model = registry.get("models", "mesh_gnn").factory(hidden=8, layers=2).eval()
    inputs, _ = small.train[[0, 1]]
    names = ["node_features", "edge_features", "edge_index"]
    exporter, _ = export_onnx(model, inputs, tmp_path / "mesh.onnx", input_names=names, output_names=["edges"], opset=18, dynamic_batch=True)
    assert exporter == "dynamo"
    batch, _ = small.val[[0, 1, 2]]  # another batch size
    (output,) = onnxruntime.InferenceSession(str(tmp_path / "mesh.onnx")).run(None, {n: t.numpy() for n, t in zip(names, batch)})
    with torch.no_grad():
        np.testing.assert_allclose(output, model(*batch).numpy(), atol=1e-5, rtol=1e-4)


# -- losses and metric ----------------------------------------------------------------
@pytest.mark.parametrize("name", MESH_LOSSES)
def test_mesh_loss_is_zero_at_the_target_positive_elsewhere_and_differentiable(registry, small, name):
    loss = registry.get("losses", name).factory()
    assert loss.needs_inputs is True
    inputs, target = small.train[[0, 1, 2]]
    assert loss(target.clone(), target, inputs).item() == 0.0
    prediction = (target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))).requires_grad_()
    value = loss(prediction, target, inputs)
    assert value.item() > 0 and value.dim() == 0
    value.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="needs the mesh"):
        loss(prediction, target)


@pytest.mark.parametrize("name", MESH_LOSSES)
def test_mesh_losses_ignore_a_constant_offset(registry, small, name):
    """They are seminorms of the error (l1 sees the offset)."""
    inputs, target = small.train[[0, 1]]
    value = registry.get("losses", name).factory()(target + 0.5, target, inputs)
    assert value.item() == pytest.approx(0.0, abs=1e-5)


def test_gradient_consistency_sees_a_ramp_and_smoothness_an_alternation(registry):
    """Two edges on a path 0 -> 1 -> 2: a ramp of the error along the path and an error that alternates."""
    registry_losses = {name: registry.get("losses", name).factory() for name in MESH_LOSSES}
    nodes = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]])
    edge_index = torch.tensor([[[0, 1], [1, 2]]])
    inputs = (nodes, torch.zeros(1, 2, 1), edge_index)
    zero = torch.zeros(1, 2, 1)
    ramp = registry_losses["gradient_consistency"](torch.tensor([[[0.0], [1.0]]]), zero, inputs)
    assert ramp.item() == pytest.approx(0.5)  # node means 0, 0.5, 1 over unit lengths
    alternation = torch.tensor([[[1.0], [-1.0]]])
    assert registry_losses["smoothness"](alternation, zero, inputs).item() > 0.4


def test_relative_l1_metric(registry):
    metric = registry.get("metrics", "relative_l1").factory(eps=0.5)
    assert registry.get("metrics", "relative_l1").meta["mode"] == "min"
    metric.update(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.5]))
    metric.update(torch.tensor([0.0]), torch.tensor([-1.5]))
    assert metric.compute().item() == pytest.approx((0.5 / 1.0 + 0.5 / 2.0 + 1.5 / 2.0) / 3)


# -- spec -----------------------------------------------------------------------------
def plan_json(*args: str) -> dict:
    result = CliRunner().invoke(app, ["plan", "specs/mesh.toml", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def weights(stage: dict) -> list:
    return [(term["name"], term["weight"]) for term in stage["loss"]["terms"]]


def test_spec_compiles_with_both_stages_and_the_seed_weights(monkeypatch, specs_dir):
    monkeypatch.chdir(specs_dir.parent)
    plan = plan_json()
    converge, refine = plan["stages"]
    assert (converge["name"], refine["name"]) == ("converge", "refine")
    assert weights(converge) == [("l1", 2.0), ("relative_l1", 0.8), ("smoothness", 0.08), ("gradient_consistency", 0.0), ("curvature", 0.05)]
    assert weights(refine) == [("l1", 1.5), ("relative_l1", 0.6), ("smoothness", 0.10), ("gradient_consistency", 0.25), ("curvature", 0.08)]
    assert (converge["lr"], refine["lr"]) == (5e-4, 1e-4)
    assert refine["init"]["stage"] == "converge" and refine["early_stop"]["patience"] > 0
    assert refine["steps"] == 2 * converge["steps"]  # the seed's 200 + 400 epochs, scaled
    full = plan_json("--profile", "full")
    assert [s["epochs"] for s in full["stages"]] == [200, 400] and full["stages"][1]["early_stop"]["patience"] == 50
    tiny = plan_json("--profile", "tiny")
    assert [s["steps"] for s in tiny["stages"]] == [4, 4]


def test_tiny_profile_runs(registry, specs_dir, tmp_path):
    """The whole spec through the engine, a few steps per stage: the mesh losses get the batch's inputs."""
    from stagedsl.engine.runner import run_plan
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import load_spec

    spec = load_spec(specs_dir / "mesh.toml", profile="tiny", overrides=["run.device=cpu"], registry=registry)
    result = run_plan(compile_plan(spec, registry), registry=registry, out=tmp_path / "run")
    assert result.status == "completed" and list(result.stages) == ["converge", "refine"]
    assert (tmp_path / "run" / "stages" / "refine" / "best.safetensors").exists()
