"""The engine: runs a `Plan` and reads nothing but the `Plan` (and the registry's factories).

Public entry: `stagedsl.engine.runner.run_plan` (also ``stagedsl.run_plan``). One module,
one job:

- ``runner``       stage sequencing, gate outcomes (stop / retry / goto / warn), from_stage, summary
- ``attempts``     one stage: its attempts (gate retries), or its continuation from a checkpoint
- ``resuming``     `resume_plan`: newest good checkpoint, the plan it is handed judged against it, run on
- ``plan_diff``    what a resume's changes are, and whether it may make them
- ``stage_setup``  build one stage: seed, init weights, freeze, optimizer, scheduler, objective, metrics
- ``driver``       one attempt of a stage: boundaries (log, evaluation, best/early stop, eval gates)
- ``loop``         the hot step loop
- ``evaluation``   val/loss and val/<metric> on the validation split
- ``objective``    the stage's loss (sum / blend) with "auto" arguments resolved once
- ``gates``        gate decisions
- ``freeze``       requires_grad, frozen norm layers held in eval mode
- ``placement``    device, precision (autocast, GradScaler), model wrapping (DDP per stage), samplers, rank-0 writes
- ``distributed``  the processes under torchrun: ranks, the process group, what they agree on, rank 0's reads
- ``loaders``      batch sources (whole-batch fetch for in-memory splits)
- ``outputs``      plan.json, spec.toml, metrics.jsonl, TensorBoard, summary.json
- ``progress``     progress bar / plain lines and notices on stderr
- ``run_state``    `RunState`: all mutable run state, serialisable whole
- ``events``       `Event` and `Callback`
- ``seeding``      seeds for the run and each stage
- ``signals``      SIGINT / SIGTERM: finish the step, save, stop (`RunInterrupted`)
- ``context``      `RunContext`: the live, run-wide objects
- ``checkpointing/`` every file a checkpoint is made of:
  ``weights`` (best/last safetensors, safe reading), ``trainer_checkpoints`` (resumable
  folders: manifest, checksums, rotation), ``trainer_payload`` (trainer.safetensors:
  optimizer, scheduler, scaler, RNG, data position, loss window), ``resume_point`` (a
  loaded checkpoint and how each part goes back), ``background_writer`` (one write at a
  time on a thread), ``init_weights`` (a stage's `init` file), ``safe_io`` (atomic
  durable writes, checksums, torch loading that never runs code)
"""
