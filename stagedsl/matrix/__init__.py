"""The run matrix: one spec's variants x seeds as member runs, trained N at a time, with an index.

Above the engine: it expands a spec into member specs (`stagedsl.spec.matrix`), compiles
and runs each through the engine's public entry points (`run_plan`, `resume_plan`) and
keeps its own folder (`MatrixDir`). Light at import; the pieces load on use.
"""
