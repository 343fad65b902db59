"""Export: from a run directory to ONNX, FP16 ONNX and a model package, each verified.

- `runner.export_run` — the whole export (public as ``stagedsl.export_run``);
- `package.load_package` — a package back to a model (public as ``stagedsl.load_package``);
- `options` — the ``[export]`` keys and their defaults; `source` — reading the run
  directory; `onnx_io` — writing, converting and running ONNX files; `checks` — parity
  and metrics; `prune` — L1 pruning; `report` — what an export did.

Nothing is imported here, so ``import stagedsl.export`` stays light; export imports down
the pipeline only (plan, engine, registry), never plugins.
"""
