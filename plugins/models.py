"""Generic models. Each factory imports its network module only when called.

The seed systems' own models live with their data in `stagedsl_plugins.systems`.
"""

from stagedsl import hookimpl


def mlp(in_features: int, hidden: list[int], out_features: int, activation: str = "relu", dropout: float = 0.0):
    """Multilayer perceptron over flattened (and concatenated) inputs."""
    from stagedsl_plugins._mlp import MLP

    return MLP(in_features, list(hidden), out_features, activation, dropout)


@hookimpl
def register_models(register):
    """Register the generic models."""
    register("mlp", mlp)
