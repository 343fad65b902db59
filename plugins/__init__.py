"""Built-in plugins of stagedsl, registered through the same hooks as third-party ones.

Generic pieces are grouped by kind, one module each: ``models``, ``datasets``,
``losses``, ``metrics``, ``optimizers``, ``schedulers``, ``freeze`` (freeze
strategies), ``ensembles``, ``meta_learners``. Each seed system keeps its model, data and own pieces together under
``systems/<system>/``. Modules whose names start with an underscore hold the heavy code
(torch networks and modules, generators) that a factory imports when it is called, so
registering stays cheap. `stagedsl.registry.manager.BUILTIN_MODULES` lists the modules
that register pieces.
"""
