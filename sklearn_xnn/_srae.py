"""SRAEExplainer: the XNN explanation space trained with a Sparse Reconstruction Autoencoder."""

import contextlib
import logging
import warnings

from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    _fit_context,
)
from sklearn.utils.validation import check_is_fitted

from sklearn_xnn import _batching as batching
from sklearn_xnn import _fitting as fitting
from sklearn_xnn import _persistence
from sklearn_xnn._inference import ExplainerInferenceMixin
from sklearn_xnn._threads import torch_threads
from sklearn_xnn._validation import (
    PARAMETER_CONSTRAINTS,
    n_init_of,
    validate_chunk,
)

logger = logging.getLogger("sklearn_xnn")


class SRAEExplainer(
    ClassNamePrefixFeaturesOutMixin, ExplainerInferenceMixin, RegressorMixin, BaseEstimator
):
    """Explanation space of a network layer: a few sparse, non-negative x-features.

    Learns an encoder ``E`` from a layer's activations ``Z`` to ``K`` non-negative
    x-features ``x = E(z)``, a linear head ``y_hat = W x + b`` that rebuilds the logits to
    explain, and a decoder ``G`` that rebuilds ``Z`` from ``x`` (a training-time
    regulariser). The SRAE objective combines three terms::

        L_faith + alpha_reconstruction * L_rec + alpha_pullaway * L_pt

    ``L_faith`` the mean squared error of the logits, ``L_rec`` the log penalty
    ``mean_j log(1 + q e_j)`` of each activation unit's mean squared reconstruction error
    (or the plain MSE) and ``L_pt`` the pull-away term of the x-features' contributions
    ``x_ik W_ck``. The User Guide gives the exact formulas.

    **Faithful by construction.** ``fit`` computes in closed form the best rank-K linear
    predictor of ``y`` from ``Z`` (``faithfulness_bound_``), starts from it with a
    deterministic start (the encoder carries that subspace exactly, in its simplest
    rotation), and keeps faithfulness as a constraint: a multiplier adapted after every
    step (as in GECO, Rezende & Viola 2018) holds the explainer within
    ``faithfulness_tol`` of the bound and spends the rest on reconstruction and pull-away.
    Of the feasible epochs (faithful, still explaining the inputs the start explained
    but at most 0.5% of them, no dead x-feature) the sparsest is kept, so any
    ``max_iter >= 1`` is that faithful on the training rows. ``faithfulness="kl"`` holds
    the network's decision (softmax) the same way, but its linear start may miss the
    target: when no epoch meets it, the closest epoch is kept and a ConvergenceWarning
    says so. With ``rescale=True`` any activation scale works and every method answers
    in the caller's units.
    :meth:`SRAEExplainer.reference` keeps the paper's recipe.

    Parameters
    ----------
    n_components : int, float or "auto", default=5
        Number ``K`` of x-features. A float in ``(0, 1)`` chooses it: the smallest ``K``
        whose rank-K linear bound reaches that fraction of the training R² all components
        reach, read from the reduced-rank spectrum before training (choosing costs no
        training); ``"auto"`` is 0.98. Without ``y`` the fraction is of ``X``'s variance
        (principal directions). The chosen ``K`` is ``n_components_``, the curve
        ``faithfulness_curve_``.
    hidden_layer_sizes : tuple of int or "auto", default="auto"
        Widths of the encoder's hidden layers (mirrored in the decoder). "auto" is
        ``(max(64, 4 K), max(32, 2 K))`` for ``K`` x-features, each width capped at the
        paper's ``(800, 100)`` and at ``2 * n_features`` but never below ``2 K``: every
        hidden layer carries the start's ``K`` directions as ReLU pairs (wider layers
        cost time without making the explanation more faithful or sparser). A layer
        narrower than ``K`` is refused: it could not carry the faithful start.
    faithfulness : {"mse", "kl"}, default="mse"
        What the explanation must keep. ``"mse"``: the logits (squared error, R² averaged
        over the outputs as ``multioutput`` says). ``"kl"``: the decision, the mean KL
        divergence between the softmax of the network's logits and of the rebuilt ones at
        ``temperature``; ``y`` must hold two or more logits. ``score`` returns R² either
        way; for decisions use :func:`~sklearn_xnn.metrics.top1_agreement_scorer` and
        :func:`~sklearn_xnn.metrics.softmax_kl`.
    multioutput : {"uniform_average", "variance_weighted"}, default="uniform_average"
        How R² averages over the outputs, as in :func:`sklearn.metrics.r2_score`: each
        output counts alike (``"uniform_average"``, right when every logit matters, as a
        classifier's classes do) or in proportion to its variance
        (``"variance_weighted"``, right when the outputs share units and the large ones
        matter most). It decides the rank-K bound (``faithfulness_bound_`` is the best
        rank-K linear predictor in that average), the constraint that holds the
        explainer near it, and :meth:`score`. With ``faithfulness="kl"`` it decides
        :meth:`score` only: the bound and the constraint are the softmax KL's.
    temperature : float, default=1.0
        Softmax temperature of ``faithfulness="kl"``.
    faithfulness_tol : float or None, default=0.005
        The faithfulness constraint, enforced on the training rows. ``"mse"``: how far
        in R² the explainer may fall below ``faithfulness_bound_``, the rank-K linear
        bound. ``"kl"``: the largest admissible KL in nats, capped at the rank-K linear
        predictor's (``faithfulness_bound_``). With two outputs or more, training under
        the constraint also holds the inputs' decisions explained: the rows whose top
        output the start gives a positive contribution keep one, all but 0.5% of the rows
        (held by a multiplier as the faithfulness is). None trains the fixed-weight
        objective.
    network_head : torch.nn.Module or None, default=None
        The layers after the explained one: a module mapping rows of ``X`` (in the
        caller's units) to the logits ``y``. When given, the reconstruction term also
        holds the faithfulness error of ``network_head`` on the decoder's output, so the
        rebuilt activations must keep the network's output. Frozen and copied, never
        modified; :meth:`save` stores it as None (pickle keeps it).
    alpha_faithfulness : float, default=1.0
        Weight of the faithfulness term when ``faithfulness_tol=None``; with the
        constraint, the multiplier's starting value is computed from the data instead.
    alpha_reconstruction : float, default=0.1
        Weight of the reconstruction term.
    alpha_pullaway : float, default=0.1
        Weight of the pull-away term.
    reconstruction : {"log", "mse"}, default="log"
        Reconstruction penalty: the concave log penalty or the plain mean squared error.
    log_penalty : float, default=100.0
        The ``q`` of the log penalty ``log(1 + q e_j)``.
    pullaway : {"samples", "components"}, default="samples"
        Pull-away over the rows of each contribution matrix (different inputs use
        different x-features) or over its columns (the x-features decorrelate).
    dropout : float, default=0.0
        Dropout probability after the encoder's first hidden layer (the reference used
        0.02).
    pretrain : int, default=0
        Epochs of greedy layer-wise pre-training for each encoder/decoder layer pair
        before the faithful start (it shapes the units the start does not use); 0 turns
        pre-training off. The reference used 10.
    max_iter : int, default=30
        Maximum number of fine-tuning epochs.
    batch_size : int, default=256
        Minibatch size (clipped to the number of training rows). The reference used 50.
    learning_rate_init : float, default=1e-3
        Adam's learning rate; it warms up linearly over the first epoch and is
        multiplied by 0.1 every 40 epochs.
    weight_decay : float, default=1e-4
        Adam's L2 weight decay.
    tol : float, default=1e-4
        Minimum improvement of the monitored value (under the constraint the mean number
        of significant x-features per input, else the total loss) that resets the
        patience counter; under the constraint also by more than the count's standard
        error (sampling noise). An epoch that misses the constraint improves only while
        none has met it, by missing it by ``tol`` less than any epoch before.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, monitor them, keep the best weights;
        the constraint is then also checked there, against the bound's held-out value.
    validation_fraction : float, default=0.1
        Fraction of rows held out when ``early_stopping=True``: the same rows for every
        ``random_state`` (a fixed draw), so that seeds and settings are judged on one
        split and explainers fitted together train as one stacked network.
    n_iter_no_change : int, default=5
        Epochs without an improvement of at least ``tol`` before training stops.
    collapse_retries : int, default="deprecated"
        Has no effect.

        .. deprecated:: 0.2
           The collapse guard (retraining with adjusted alphas when one x-feature carried
           most of the prediction) was removed: under the faithfulness constraint the
           start explains with all ``K`` directions and the kept epoch has no dead
           x-feature. Setting it warns; it will be removed in 0.4.
    rescale : bool, default=True
        Rescale ``Z`` and ``y`` internally (see above); answers stay in the caller's units.
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}, default="auto"
        Where to train ("auto": a GPU when torch sees one). A missing device is an error
        at ``fit``; inference falls back to the CPU.
    precision : {"float32", "bf16"}, default="float32"
        "bf16": the forward and backward passes under bfloat16 autocast on CUDA GPUs
        (weights, optimiser and losses stay float32); ignored on other devices.
    compile : bool, default=False
        Compile the training step with ``torch.compile`` (the first epoch pays for it).
    stream_threshold : int, default=2**30
        ``X`` whose float32 copy would exceed this many bytes is streamed: it stays where
        it is (a ``numpy.memmap``, any array that slices), each minibatch is read and
        moved to the device, and the statistics come from streaming passes: peak memory
        is bounded by the chunks, the model and ``n_samples * (hidden_layer_sizes[-1] +
        n_outputs)`` numbers, not by ``X``. Smaller ``X`` is copied to the device once,
        except by a single explainer on the CPU, which reads its rows in place.
    n_init : int, default=1
        Initialisations (seeds) to fit, trained together as one stacked network (see
        :func:`sklearn_xnn.sweep`), each equal to its own fit up to float rounding; the
        first seed is an integer ``random_state`` itself. Kept: one that meets the
        constraint, then with the fewest dead x-features, then the fewest significant
        x-features per input on the training rows (the whole loss without the
        constraint); see ``init_scores_``. Each initialisation costs one fit.
        ``partial_fit`` and :func:`sklearn_xnn.distributed.fit_sharded` train one.

        .. deprecated:: 0.2
           ``"auto"`` fits one initialisation, as ``1`` does, and will be removed in 0.4.
    random_state : int, RandomState instance or None, default=None
        Seeds the local ``torch.Generator`` of every random draw (``None``: from numpy's
        global state, as scikit-learn does). Two CPU fits with one integer are bitwise equal.
    verbose : int, default=0
        When positive, each epoch's loss is logged (INFO) to the ``sklearn_xnn`` logger
        and shown: on stderr when logging is not configured, else by the configured
        handlers.

    Attributes
    ----------
    n_components_ : int
        Number of x-features.
    faithfulness_bound_ : float or None
        The best rank-K linear predictor of ``y`` from ``X`` on the training rows, the
        reference of the constraint: its R² (averaged as ``multioutput`` says) for
        ``"mse"``, its mean softmax KL for ``"kl"``. None when unsupervised.
    faithfulness_ : float
        The fitted explainer's training R² (``"mse"``) or mean softmax KL (``"kl"``). The
        R² is averaged over the outputs that vary, as ``faithfulness_bound_`` is; an output
        constant on the training rows is predicted exactly and left out (``score``, as
        ``sklearn.metrics.r2_score``, counts it as 1).
    faithfulness_curve_ : ndarray of shape (n_ranks,)
        Training R² (averaged as ``multioutput`` says) of the best rank-k linear
        predictor for k = 1, 2, ... (without ``y``: the variance fraction of the top k
        principal directions).
    faithfulness_multiplier_ : float
        The constraint's multiplier at the end of training (``alpha_faithfulness``
        without the constraint).
    coef_ : ndarray of shape (n_outputs, n_components)
        Head weights ``W`` in the caller's logit units, a column per x-feature (not per
        column of ``X``: ``RFE`` and ``SelectFromModel`` do not apply).
    intercept_ : ndarray of shape (n_outputs,)
        Head bias ``b``.
    components_ : ndarray of shape (n_components, n_features_in_)
        The decoder's response to each x-feature: ``G(m_k e_k) - G(0)`` with ``m_k`` the
        mean positive value of x-feature ``k`` on the training rows (zero for a dead one).
    dead_components_ : ndarray of bool of shape (n_components,)
        x-features that are zero on every training row.
    n_dead_components_ : int
        Number of dead x-features (a ``ConvergenceWarning`` is raised when positive).
    loss_curve_ : list of float
        The objective minimised, after each fine-tuning epoch of the kept attempt: under
        the faithfulness constraint ``alpha_reconstruction * L_rec + alpha_pullaway *
        L_pt`` (the faithfulness is held at its target instead), else the whole loss
        ``alpha_faithfulness * L_faith + alpha_reconstruction * L_rec + alpha_pullaway
        * L_pt``. Mean over the epoch's minibatches. Under the constraint it need not
        decrease after the first epochs: the fitted explainer is the kept epoch (the
        sparsest feasible one, see ``n_significant_curve_``), not the last.
    faithfulness_history_ : list of float
        Under the faithfulness constraint, the training faithfulness after each epoch
        with its head, in the units of ``faithfulness_`` (R² or KL): it starts near
        ``faithfulness_bound_``; epochs may fall short of the constraint while its
        multiplier settles (they are not kept). Empty without the constraint.
    n_significant_curve_ : ndarray of shape (n_iter_,) or (0,)
        Under the faithfulness constraint, what picks the kept epoch: after each epoch,
        the mean number of significant x-features per input and output
        (:func:`sklearn_xnn.metrics.n_significant` of the contributions, on the first
        training rows up to 2**22 contributions, or on the validation rows with
        ``early_stopping=True``), NaN for an epoch that breaks the constraint. The kept
        epoch has the smallest value; with every value NaN, the start (for ``"kl"``, the
        epoch or start closest to the constraint). Empty without the constraint.
    loss_parts_ : ndarray of shape (n_iter_, 3)
        Per-epoch faithfulness, reconstruction and pull-away terms (means over the
        epoch's minibatches). Under the faithfulness constraint the first is the error it
        bounds (``1 - R²`` averaged as ``multioutput`` says, or the softmax KL), else the
        logits' mean squared error in training units. With more than 64 outputs the
        pull-away, and with more than 256 activation units the reconstruction, are each
        step's unbiased estimates from a random subset of them.
    validation_scores_ : list of float or None
        Validation loss per epoch when ``early_stopping=True``.
    n_iter_ : int
        Fine-tuning epochs run in the kept attempt.
    n_collapse_retries_ : int
        Always 0.

        .. deprecated:: 0.2
           The collapse guard was removed (see ``collapse_retries``); the attribute will
           be removed in 0.4.
    init_seeds_ : ndarray of shape (n_inits,)
        The seed (``random_state``) of each initialisation. Only when more than one was
        fitted (``n_init > 1``), as are the five attributes below.
    init_scores_ : ndarray of shape (n_inits,)
        Each initialisation's objective on its training rows (lower is better; see
        ``n_init``), in training units.
    init_feasible_ : ndarray of bool of shape (n_inits,)
        Whether each initialisation meets the faithfulness constraint.
    init_n_dead_ : ndarray of shape (n_inits,)
        Dead x-features of each initialisation.
    best_init_ : int
        Index of the kept initialisation; the fitted state is its own.
    init_stability_ : float
        Mean Hungarian-matched correlation of the kept x-features with the other
        initialisations' (:func:`sklearn_xnn.metrics.matched_correlation`, training rows).
    alphas_ : tuple of float
        ``(alpha_faithfulness, alpha_reconstruction, alpha_pullaway)`` used in training
        (under the faithfulness constraint the first has no effect: the constraint's
        multiplier, ``faithfulness_multiplier_``, weighs the faithfulness term instead).
    scale_ : float
        Divisor applied to ``Z`` during training.
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Logit standardisation used during training.
    encoder_coefs_, encoder_intercepts_ : list of ndarray
        Encoder layers in the caller's units (``coefs[l]`` is ``(n_in, n_out)``).
    decoder_coefs_, decoder_intercepts_ : list of ndarray
        Decoder layers in the caller's units.
    decoder_relu_output_ : bool
        Whether the decoder ends in a ReLU (all training activations were >= 0).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``Z`` had string column names.

    See Also
    --------
    sklearn.decomposition.PCA : Variance-driven linear embedding.
    sklearn.decomposition.NMF : Non-negative factorisation without a target.
    sklearn.cross_decomposition.PLSRegression : Supervised linear rank-K regression.

    Notes
    -----
    **Input.** ``X``: a dense, finite, real 2-D array with at least 2 rows; float32 and
    float64 are kept, float16 is computed as float32, integers, booleans and numeric
    objects become float64; sparse, complex and string data are refused with an error
    saying what to do. Any magnitude from ~1e-300 to ~1e300 trains (the rescaling is
    overflow-safe).

    **Faults.** A NaN or infinite loss restores the last finite weights and warns
    (``ConvergenceWarning``); without any finite model ``fit`` raises
    :class:`~sklearn_xnn.exceptions.TrainingDivergedError`. A ``KeyboardInterrupt``
    keeps the last complete epoch, as scikit-learn's MLP does. :meth:`save` writes a
    checksummed safetensors file that loading never executes (pickle works too); both
    load without the GPU the model was trained on. The User Guide has the details.

    References
    ----------
    Z. Qi, S. Khorram, F. Li. "Embedding Deep Networks into Visual Explanations".
    Artificial Intelligence, 2021. arXiv:1709.05360.

    Examples
    --------
    >>> from sklearn_xnn import SRAEExplainer
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, _ = make_concept_activations(300, 32, random_state=0)
    >>> xnn = SRAEExplainer(n_components=5, hidden_layer_sizes=(64, 16), max_iter=20,
    ...                     pretrain=2, random_state=0).fit(Z, y)
    >>> xnn.transform(Z).shape
    (300, 5)
    >>> xnn.predict(Z).shape
    (300, 10)
    """

    _parameter_constraints: dict = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        n_components=5,
        *,
        hidden_layer_sizes="auto",
        faithfulness="mse",
        multioutput="uniform_average",
        temperature=1.0,
        faithfulness_tol=0.005,
        network_head=None,
        alpha_faithfulness=1.0,
        alpha_reconstruction=0.1,
        alpha_pullaway=0.1,
        reconstruction="log",
        log_penalty=100.0,
        pullaway="samples",
        dropout=0.0,
        pretrain=0,
        max_iter=30,
        batch_size=256,
        learning_rate_init=1e-3,
        weight_decay=1e-4,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        collapse_retries="deprecated",
        rescale=True,
        device="auto",
        precision="float32",
        compile=False,
        stream_threshold=2**30,
        n_init=1,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.faithfulness = faithfulness
        self.multioutput = multioutput
        self.temperature = temperature
        self.faithfulness_tol = faithfulness_tol
        self.network_head = network_head
        self.alpha_faithfulness = alpha_faithfulness
        self.alpha_reconstruction = alpha_reconstruction
        self.alpha_pullaway = alpha_pullaway
        self.reconstruction = reconstruction
        self.log_penalty = log_penalty
        self.pullaway = pullaway
        self.dropout = dropout
        self.pretrain = pretrain
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.collapse_retries = collapse_retries
        self.rescale = rescale
        self.device = device
        self.precision = precision
        self.compile = compile
        self.stream_threshold = stream_threshold
        self.n_init = n_init
        self.random_state = random_state
        self.verbose = verbose

    @classmethod
    def reference(cls, pullaway="samples", **overrides):
        """An explainer with the paper's recipe (alphas 1/10/10 or 1/15/5, batch 50, no rescaling).

        The paper's fixed-weight objective: no faithfulness constraint
        (``faithfulness_tol=None``), 10 epochs of layer-wise pre-training per layer,
        up to 150 epochs of fine-tuning (stopped after 10 without improvement).

        Parameters
        ----------
        pullaway : {"samples", "components"}, default="samples"
            Which pull-away variant, with its reference weights.
        **overrides : dict
            Any other parameter, e.g. ``n_components`` or ``random_state``.

        Returns
        -------
        explainer : SRAEExplainer
            Unfitted.
        """
        if pullaway not in fitting.REFERENCE_PARAMS:
            raise ValueError(f"pullaway must be 'samples' or 'components', got {pullaway!r}.")
        return cls(**{**fitting.REFERENCE_PARAMS[pullaway], **overrides})

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the explanation space to activations ``X`` and the logits ``y`` to explain.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations of the explained layer, one row per input.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Logits (or any network outputs) to explain. ``None`` fits the unsupervised
            SRAE: no head, reconstruction and pull-away only.

        Returns
        -------
        self : SRAEExplainer
            The fitted explainer.
        """
        with fitting.progress_logging() if self.verbose else contextlib.nullcontext():
            return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train on one chunk of rows: streaming training for data larger than memory.

        The first call initialises the explainer from its chunk alone, as ``fit`` does (the
        bound, the faithful start, ``scale_``, ``y_mean_``, ``y_scale_``, the decoder's
        sign), so **the first chunk must be a representative sample**: several thousand
        rows with every output varying. Each call then runs one epoch over its chunk with
        the same Adam optimiser and the constraints' multipliers and targets carried over,
        at the constant ``learning_rate_init``; the epoch ends with the exact least-squares
        head on the chunk, as ``fit``'s epochs do (an output constant on the chunk keeps
        its head), except on a chunk shorter than ``batch_size`` (a stream's tail), where
        the head keeps what its steps learned: a least-squares head would fit those few
        rows alone. An epoch that breaks the constraint on its chunk is undone;
        ``faithfulness_`` is measured on the last chunk (NaN for one row); no early
        stopping. ``alpha_reconstruction``, ``alpha_pullaway``, ``learning_rate_init`` are
        read at every call; the shape, scale and constraint stay the first call's (changing
        ``n_components``, ``hidden_layer_sizes``, ``faithfulness``, ``multioutput``,
        ``faithfulness_tol``, ``temperature``, ``rescale`` is refused: call ``fit``). After
        ``fit`` or unpickling, ``partial_fit`` continues from the fitted weights, its
        multipliers restarting from ``faithfulness_multiplier_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of activations.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Their logits; given on every call or on none.

        Returns
        -------
        self : SRAEExplainer
            The updated explainer.
        """
        with fitting.progress_logging() if self.verbose else contextlib.nullcontext():
            return self._fit(X, y, incremental=True)

    def _fit(self, X, y, incremental):
        """The one training path of ``fit`` and ``partial_fit``."""
        if incremental and hasattr(self, "n_components_"):
            X, Y = validate_chunk(self, X, y)
            for name in batching.INIT_ATTRIBUTES:  # they describe the initialisations of fit
                self.__dict__.pop(name, None)
            eng = self.__dict__.get("_engine") or fitting.engine_from_fitted(self)
            with torch_threads():
                result = fitting.train_chunk(self, eng, X, Y)
            self._engine = eng
            fitting.store(self, result, eng, Y is not None)
            return self
        if not incremental and n_init_of(self) != 1:
            return batching.fit_explainers([self], X, y)[0]
        run = fitting.start_fit(self, X, y, incremental)
        with torch_threads():
            result = fitting.train(self, run)
        return fitting.finish(self, run, result)

    # ------------------------------------------------------------------ fitted state
    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_engine", None)  # torch objects; partial_fit rebuilds them from the weights
        return state

    def __setstate__(self, state):
        state.pop("n_collapse_retries_", None)  # an earlier version's; now a property
        super().__setstate__(state)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Save the fitted explainer to ``path`` without pickle (a safetensors file).

        The file holds the library version, the parameters and every fitted attribute
        as plain arrays and JSON, with a SHA-256 checksum; loading it never executes
        code. Pickle and joblib keep working as well.

        Parameters
        ----------
        path : str or os.PathLike
            Destination file; ``.safetensors`` is a good extension.

        See Also
        --------
        sklearn_xnn.load : Load any saved sklearn_xnn estimator.
        """
        _persistence.save(self, path)

    @classmethod
    def load(cls, path):
        """Load an explainer written by :meth:`save` (on any machine, GPU or not).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.

        Returns
        -------
        explainer : SRAEExplainer
            The fitted explainer.

        Raises
        ------
        sklearn_xnn.exceptions.InvalidModelFileError
            If the file is truncated, corrupted, foreign or inconsistent.
        """
        return _persistence.load(path, expected_class=cls)

    @property
    def n_collapse_retries_(self):
        check_is_fitted(self)
        warnings.warn(
            "n_collapse_retries_ is deprecated in 0.2 and will be removed in 0.4; it is "
            "always 0 (the collapse guard was removed).",
            FutureWarning,
            stacklevel=2,
        )
        return 0

    @property
    def _n_features_out(self):
        """Number of x-features, for ``get_feature_names_out``."""
        return self.n_components_

    def __sklearn_is_fitted__(self):
        """Fitted once a fit stored its network (a fit that failed half-way is not)."""
        return hasattr(self, "encoder_coefs_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.target_tags.multi_output = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
