"""The words of SRAEExplainer's warnings: what went wrong and advice the user has not taken."""


def stop_message(history, max_iter, learning_rate_init):
    """The warning for an interrupted or diverged training, or None."""
    done = history.n_iter
    kept = f"after epoch {done}" if done else "from before fine-tuning"
    if history.interrupted_in_pretraining:
        return (
            "fit was interrupted (KeyboardInterrupt) during layer-wise pre-training; "
            "fine-tuning was skipped and the explainer keeps the faithful start (the "
            "partly pre-trained network with a least-squares head). It is usable but not "
            "trained."
        )
    if history.interrupted_epoch is not None:
        return (
            "fit was interrupted (KeyboardInterrupt) in fine-tuning epoch "
            f"{history.interrupted_epoch + 1} of {max_iter}; the explainer keeps "
            f"the weights {kept} and is usable, but not converged."
        )
    if history.diverged_epoch is not None:
        return (
            "The training loss became non-finite in fine-tuning epoch "
            f"{history.diverged_epoch + 1} (learning_rate_init={learning_rate_init}); "
            f"training stopped and the explainer keeps the last finite weights ({kept}). "
            "Lower learning_rate_init, keep rescale=True, or check X and y for extreme "
            "values."
        )
    return None


def _dead_advice(est):
    """Remedies for dead x-features that ``est`` is not already using."""
    advice = ["another random_state", f"n_components={est.n_components_ - est.n_dead_components_}"]
    if est.alpha_pullaway > 0:
        advice.append(f"a smaller alpha_pullaway (now {est.alpha_pullaway:g})")
    if est.collapse_retries == 0:
        advice.append("collapse_retries > 0")
    if est.faithfulness_tol is None and getattr(est, "_has_head", False):
        advice.append("faithfulness_tol=0.01 (keeps the faithful start's x-features)")
    return ", ".join(advice[:-1]) + " or " + advice[-1]


def problem_messages(est, result):
    """Warnings about the fitted explainer ``est`` (dead, collapsed, unconverged)."""
    out = []
    if est.n_dead_components_:
        out.append(
            f"{est.n_dead_components_} of {est.n_components_} x-features are dead (zero "
            "on every training row): the explanation space uses fewer concepts than "
            f"asked. Try {_dead_advice(est)}."
        )
    if result.collapsed and est.collapse_retries and est.n_collapse_retries_:
        out.append(
            f"The collapse guard retried {est.collapse_retries} times and one x-feature "
            "still carries most of the prediction; the best attempt was kept."
        )
    if not est._converged and not est.early_stopping and not result.stopped:
        out.append(
            f"SRAEExplainer reached max_iter={est.max_iter} epochs before the loss "
            "stopped improving; consider increasing max_iter."
        )
    return out
