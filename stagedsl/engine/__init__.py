"""The engine: runs a `Plan` and reads nothing but the `Plan` (and the registry's factories).

Public entry: `stagedsl.engine.runner.run_plan` (also ``stagedsl.run_plan``). One module,
one job:

- ``runner``      stage sequencing, gate outcomes (stop / retry / goto / warn), from_stage, summary
- ``attempts``    one stage: its attempts (gate retries), or its continuation from a checkpoint
- ``resume``      `resume_run`: newest good checkpoint, --set changes judged, run on
- ``plan_diff``   what a resume's --set changes, and whether it may
- ``restore``     a checkpoint loaded into a freshly built stage
- ``trainer_state`` trainer.safetensors: optimizer, scheduler, scaler, RNG, data position, loss window
- ``signals``     SIGINT / SIGTERM: finish the step, save, stop (`RunInterrupted`)
- ``stage``       build one stage: seed, init weights, freeze, optimizer, scheduler, objective, metrics
- ``driver``      one attempt of a stage: boundaries (log, evaluation, best/early stop, eval gates)
- ``loop``        the hot step loop
- ``evaluation``  val/loss and val/<metric> on the validation split
- ``objective``   the stage's loss (sum / blend) with "auto" arguments resolved once
- ``gates``       gate decisions
- ``freeze``      requires_grad, frozen norm layers held in eval mode
- ``placement``   device, precision (autocast, GradScaler), model wrapping, samplers, rank-0 writes
- ``loaders``     batch sources (whole-batch fetch for in-memory splits)
- ``checkpoints`` every checkpoint read or written (weights, trainer-state folders, manifests, rotation)
- ``init_weights`` a stage's init: the file it names, loaded
- ``safe_io``     atomic durable writes, checksums, torch loading that never runs code
- ``writer``      trainer checkpoints written on a background thread, one at a time
- ``outputs``     plan.json, spec.toml, metrics.jsonl, TensorBoard, summary.json
- ``progress``    progress bar / plain lines and notices on stderr
- ``state``       `RunState`: all mutable run state, serialisable whole
- ``events``      `Event` and `Callback`
- ``seeding``     seeds for the run and each stage
- ``context``     `RunContext`: the live, run-wide objects
"""
