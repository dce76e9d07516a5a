"""Run a user's network for inference without changing it: eval mode, restored afterwards."""

import contextlib


@contextlib.contextmanager
def evaluating(*modules):
    """Run ``modules`` in eval mode; restore every submodule's training flag on exit.

    Eval mode is what makes a network answer the same rows as
    :func:`~sklearn_xnn.torch.extract_activations`: batch normalisation uses its running
    statistics instead of the batch's and does not update them (its buffers, including
    ``num_batches_tracked``, stay bitwise unchanged), and dropout is the identity. Each
    submodule's own ``training`` flag is recorded and written back, also when the body
    raises, so a model with some submodules frozen in eval mode comes back exactly as it
    was. Gradients are not affected: the context does not enter ``torch.no_grad``.

    Nested use is safe (the inner context restores eval mode, the outer the original
    flags). Only the ``training`` flags are handled; a custom module that changes its
    buffers in eval mode is not guarded.

    Parameters
    ----------
    *modules : torch.nn.Module
        The networks to run; shared submodules are handled once.

    Yields
    ------
    modules : tuple of torch.nn.Module
        The same modules, now in eval mode.
    """
    flags = {}
    for module in modules:
        for sub in module.modules():
            flags.setdefault(id(sub), (sub, sub.training))
    try:
        for sub, _ in flags.values():
            sub.training = False
        yield modules
    finally:
        for sub, flag in flags.values():
            sub.training = flag
