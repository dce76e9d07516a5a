"""The typed records the engine trades with the estimator (one training configuration, one
history, one result; every field is declared once, here) and the optimiser, learning-rate
schedule and constraint multiplier a configuration sets up."""

import copy
import math
from dataclasses import dataclass, field

import torch

from sklearn_xnn._nn.collective import LOCAL


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs, in training units (scaled ``Z``, standardised ``y``).

    ``faithfulness`` is ``"mse"`` (the error is the normalised squared error
    ``mean_c MSE_c / var_c``, that is ``1 - R²`` uniform over outputs) or ``"kl"`` (the
    mean KL divergence in nats between the softmax of the logits and of their rebuilt
    values at ``temperature``, on logits in the caller's units ``logit_unit * (y_mean +
    y_scale * y)``: ``y_mean`` and ``y_scale`` are stored divided by ``logit_unit``, a
    power of two, 1 unless the logits leave float32's comfortable range).
    ``faith_target`` is the largest admissible error: the constraint that the multiplier
    enforces; None trains the fixed-weight objective with ``alpha_f``.
    """

    n_components: int
    hidden: tuple
    n_outputs: int
    dropout: float
    nonneg_output: bool
    alpha_f: float
    alpha_r: float
    alpha_p: float
    reconstruction: str
    q: float
    pullaway: str
    pretrain: int
    max_iter: int
    batch_size: int
    lr: float
    weight_decay: float
    tol: float
    n_iter_no_change: int
    verbose: int
    precision: str = "float32"
    compile: bool = False
    faith_target: float | None = None
    output_weights: torch.Tensor | None = None
    faithfulness: str = "mse"
    #: How R² averages over the outputs (``"uniform_average"`` or ``"variance_weighted"``):
    #: the faithfulness error is ``1 - R²`` in that average.
    multioutput: str = "uniform_average"
    temperature: float = 1.0
    y_mean: torch.Tensor | None = None
    y_scale: torch.Tensor | None = None
    logit_unit: float = 1.0
    network_head: torch.nn.Module | None = field(default=None, compare=False)
    z_scale: float = 1.0
    warmup_steps: int = 0
    lr_step: int = 40
    lr_gamma: float = 0.1
    multiplier_range: tuple = (1e-3, 1e4)
    #: End every epoch with the exact least-squares head on its rows; False for a
    #: ``partial_fit`` chunk shorter than one minibatch, whose head learns by its gradient
    #: steps (a least-squares head on a few rows would fit those rows alone).
    exact_head: bool = True
    dropout_generator: torch.Generator | None = field(default=None, compare=False)
    #: The other workers of a fit over several processes (``collective.LOCAL``: none).
    collective: object = field(default=LOCAL, compare=False, repr=False)


@dataclass
class History:
    """What fine-tuning recorded, epoch by epoch, and how it ended."""

    #: The loss of every epoch: its length is the number of epochs.
    loss: list = field(default_factory=list)
    parts: list = field(default_factory=list)
    faithfulness: list = field(default_factory=list)
    multiplier: list = field(default_factory=list)
    validation_loss: list = field(default_factory=list)
    significant: list = field(default_factory=list)
    converged: bool = False
    interrupted_epoch: int | None = None
    interrupted_in_pretraining: bool = False
    diverged_epoch: int | None = None
    #: Whether the kept epoch breaks the constraints (no epoch, nor the start, met them).
    infeasible: bool = False

    #: The lists that get one value per epoch (some only under the constraint).
    PER_EPOCH = ("loss", "parts", "faithfulness", "multiplier", "validation_loss", "significant")

    def extend(self, other):
        """Append ``other``'s epochs (a later ``partial_fit`` chunk)."""
        for name in self.PER_EPOCH:
            getattr(self, name).extend(getattr(other, name))
        self.converged = other.converged
        self.interrupted_epoch = other.interrupted_epoch
        self.diverged_epoch = other.diverged_epoch
        self.infeasible = other.infeasible


@dataclass
class Attempt:
    """One training attempt: the network, its history and its training x-features."""

    model: torch.nn.Module
    history: History
    optimizer: torch.optim.Optimizer | None
    x_train: torch.Tensor
    multiplier: float
    faithfulness: float | None = None
    stage: str = "fine-tuning"
    stopped: bool = False
    #: The run's :class:`Multiplier` (None without fine-tuning), which ``partial_fit``
    #: continues.
    constraints: object = None


# --------------------------------------------- optimiser, schedule, multiplier
def adam(params, lr, weight_decay):
    """Adam with torch's fused kernel where the device has one (CPU and CUDA do): one pass
    over each parameter instead of ~10, deterministic, so CPU fits stay bitwise repeatable."""
    params = list(params)
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices as fused_on
    except ImportError:  # pragma: no cover - older torch
        fused_on = lambda: ("cuda",)  # noqa: E731
    fused = bool(params) and params[0].device.type in tuple(fused_on())
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)


def schedule(cfg, steps_per_epoch, start_epoch=0):
    """The learning rate of every step from epoch ``start_epoch`` on (an endless
    generator): a linear warm-up over ``warmup_steps``, then x``lr_gamma`` every
    ``lr_step`` epochs."""
    per_epoch = max(1, steps_per_epoch)
    t = start_epoch * per_epoch
    while True:
        warm = min(1.0, (t + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        yield cfg.lr * warm * cfg.lr_gamma ** ((t // per_epoch) // cfg.lr_step)
        t += 1


class Multiplier:
    """``log lam`` of every constraint (a vector) on the device, updated after every step
    without a host round trip.

    ``values``, ``targets`` and ``slacks`` hold one number per constraint: the
    faithfulness error's first, then the share of rows that leave their top output
    unexplained, when training holds it (:func:`sklearn_xnn._nn.losses.uncovered`). A
    step's errors are measured against their targets in units of their slacks: one unit
    sustained for one epoch multiplies that constraint's ``lam`` by ``e``.
    """

    def __init__(self, values, targets, slacks, cfg, steps_per_epoch, device):
        self.on = cfg.faith_target is not None
        self.log = torch.tensor([math.log(max(v, 1e-30)) for v in values], device=device)
        self.target = torch.tensor(targets, device=device)
        self.slack = torch.tensor(slacks, device=device).clamp_min(1e-12)
        self.rate = 1.0 / max(1, steps_per_epoch)
        self.low, self.high = (math.log(v) for v in cfg.multiplier_range)

    def value(self):
        return self.log.exp() if self.on else None

    def resumed(self, steps_per_epoch):
        """A copy that carries on with ``steps_per_epoch`` steps an epoch (``partial_fit``:
        another chunk)."""
        out = copy.copy(self)
        out.rate = 1.0 / max(1, steps_per_epoch)
        return out

    def current(self, cfg):
        """The faithfulness multiplier as a float (``alpha_f`` without the constraint)."""
        return float(self.log[..., 0].exp()) if self.on else float(cfg.alpha_f)

    def update(self, errors):
        if self.on and errors is not None:
            violation = ((errors.detach() - self.target) / self.slack).clamp(-1.0, 5.0)
            self.log = (self.log + self.rate * violation).clamp(self.low, self.high)
