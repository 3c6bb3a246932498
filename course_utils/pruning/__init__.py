"""Pruning, from zeros that save bytes to removed units that save time.

- :mod:`.unstructured`: threshold and magnitude pruning with ``torch.nn.utils.prune`` (layerwise, global).
- :mod:`.schedules`: pruning inside the training loop (threshold ramp, Zhu & Gupta's cubic schedule).
- :mod:`.structured`: physical removal of FFN neurons, attention heads and conv channels.
- :mod:`.lowrank`: truncated-SVD factorization of Linear layers.
- :mod:`.storage`: what sparsity costs on disk in sparse formats.
"""

from .lowrank import LowRankLinear, choose_rank, factorize_linear, low_rank_factorize, low_rank_layers
from .schedules import GradualPruner, ThresholdPruner, cubic_sparsity, masked_step
from .storage import (
    SPARSE_FORMATS,
    CSRLinear,
    dense_from_sparse,
    sparse_size_on_disk,
    sparse_state_dict,
    storage_report,
)
from .structured import (
    channel_importance,
    ffn_importance,
    head_importance,
    ln_importance,
    prune_attention_heads,
    prune_channel_pair,
    prune_conv_channels,
    prune_ffn_neurons,
    prune_heads,
    structured_prune,
    units_to_keep,
)
from .unstructured import (
    PRUNABLE_TYPES,
    SCALES,
    ThresholdPruning,
    fine_grained_mask,
    global_prune,
    global_sparsity,
    global_threshold,
    largest_sparsity_within,
    layer_threshold,
    layerwise_prune,
    magnitude_mask,
    make_permanent,
    prunable_layers,
    prune_by_threshold,
    sensitivity_scan,
    sparsity_report,
    threshold_prune,
)

__all__ = [
    "CSRLinear", "GradualPruner", "LowRankLinear", "PRUNABLE_TYPES", "SCALES", "SPARSE_FORMATS", "ThresholdPruner",
    "ThresholdPruning", "channel_importance", "choose_rank", "cubic_sparsity", "dense_from_sparse", "factorize_linear",
    "ffn_importance", "fine_grained_mask", "global_prune", "global_sparsity", "global_threshold", "head_importance",
    "largest_sparsity_within", "layer_threshold", "layerwise_prune", "ln_importance", "low_rank_factorize",
    "low_rank_layers", "magnitude_mask", "make_permanent", "masked_step", "prunable_layers", "prune_attention_heads",
    "prune_by_threshold", "prune_channel_pair", "prune_conv_channels", "prune_ffn_neurons", "prune_heads",
    "sensitivity_scan", "sparse_size_on_disk", "sparse_state_dict", "sparsity_report", "storage_report",
    "structured_prune", "threshold_prune", "units_to_keep",
]
