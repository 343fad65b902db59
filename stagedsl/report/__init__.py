"""The report room: run directories in, one self-contained HTML page with PNG figures out.

It only reads what a run wrote (plan.json, summary.json, metrics.jsonl; a matrix's or a
search's index and summary) and never changes the run. One module, one job:

- ``rundata``   `read_run`: the run directory read into plain `RunData` (the only file access)
- ``timeline``  stage spans, curves, best checkpoints and hand-offs on the global step axis
- ``diagnosis`` hints from the curves (seed 001's table), each with its step
- ``draw``      matplotlib (optional, Agg), stage bands, colours — shared with `staged plan --plot`
- ``figures``   one run's figures: loss over the plan, validation metrics, LR by group
- ``page``      the HTML page: sections, tables, inline CSS, no script
- ``sections``  one run's sections, each a function of a `RunView`
- ``build``     `write_report`: a run's page written into ``RUN_DIR/report``
- ``compare``   `write_comparison`: two runs side by side (plan differences, one figure)
- ``matrix``    a matrix run's page: members and ensembles compared (table, bar chart), then each member
- ``search``    a search's page: objective per trial, best so far, trials, importance, then the best trial
"""
