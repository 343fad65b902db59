"""The tiny ocec spec the plan tests compile, with a slot for extra keys in its first stage."""

from stagedsl.plan.compile import compile_plan
from stagedsl.spec.loader import loads_spec

OCEC = """
[model]
use = "ocec_net"
width = 8
embed = 16

[data]
use = "ocec_eyes"
n_train = 200
n_val = 50
batch_size = 32

[defaults]
loss = "cross_entropy"
metrics = ["f1"]

[[stage]]
name = "heads"
epochs = 2
lr = 1e-4
freeze = ["backbone.**"]
{heads_extra}

[[stage]]
name = "unfreeze"
epochs = 1.5
lr = 1e-4
freeze = [{{ use = "fraction", module = "backbone", fraction = 0.5, end = "first" }}]
groups = [{{ name = "backbone", params = ["backbone.**"], lr_scale = 0.05 }}, {{ name = "margin", params = ["margin_head.**"], lr = 3e-4, weight_decay = 0.0 }}]
init = {{ stage = "heads" }}
"""


def compile_text(text, registry, **kwargs):
    """Load and compile spec text."""
    return compile_plan(loads_spec(text, registry=registry, **kwargs), registry)
