"""Built-in models. Each factory imports its network module only when called."""

from stagedsl import hookimpl


def mlp(in_features: int, hidden: list[int], out_features: int, activation: str = "relu", dropout: float = 0.0):
    """Multilayer perceptron over flattened (and concatenated) inputs."""
    from stagedsl_plugins.mlp_net import MLP

    return MLP(in_features, list(hidden), out_features, activation, dropout)


def pde_transformer(
    channels: int = 2,
    size: int = 32,
    patch: int = 4,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    residual: bool = True,
):
    """Patch transformer PDE surrogate: encoder_2d -> transformer -> decoder_2d, [B,C,H,W] -> same shape."""
    from stagedsl_plugins.pde_transformer import PDETransformer

    return PDETransformer(channels, size, patch, dim, depth, heads, mlp_ratio, dropout, residual)


def ocec_net(in_channels: int = 1, size: int = 24, width: int = 16, embed: int = 32, num_classes: int = 2, scale: float = 16.0):
    """Eye-state CNN: backbone (BatchNorm conv blocks) -> head (embedding) -> margin_head (scale*cos logits)."""
    from stagedsl_plugins.ocec_net import OCECNet

    return OCECNet(in_channels, size, width, embed, num_classes, scale)


def metr_forecaster(num_nodes: int = 16, history: int = 12, horizon: int = 3, hidden: int = 32, node_embed: int = 8, eps: float = 1e-3):
    """Sensor-graph forecaster: [B, history, nodes] readings (0 = missing) -> [B, horizon, nodes]."""
    from stagedsl_plugins.metr_forecaster import METRForecaster

    return METRForecaster(num_nodes, history, horizon, hidden, node_embed, eps)


@hookimpl
def register_models(register):
    """Register the built-in models."""
    register("mlp", mlp)
    register("pde_transformer", pde_transformer)
    register("ocec_net", ocec_net)
    register("metr_forecaster", metr_forecaster)
