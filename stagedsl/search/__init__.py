"""Search: a spec's `[search]` as a study of trials, each a complete run, with shared stage prefixes trained once.

Above the engine, beside the matrix: `compile_search` settles the study and compiles
representative trials (`stagedsl.search.plan`), the study hands out parameters
(`stagedsl.search.study`, Optuna or the plain grid), each trial is an ordinary run directory
(`stagedsl.search.trials`), and the stage cache (`stagedsl.search.cache`) lets a trial start
from the finished stages of an earlier one whose stage hashes are equal. `SearchDir` owns the
folder. Light at import; the pieces load on use.
"""
