"""The ablation lab: train spec variants on small data and compare their curves (no Streamlit).

``train(spec, load_data("digits", input_size=32, in_channels=3))`` trains a
network with per-epoch curves; ``run_ablation`` trains every variant of the
``--vary`` knobs over several seeds; ``save_trained``/``load_trained`` write
and read checkpoints that carry their spec; ``training_figure`` and
``ablation_figure`` draw the curves. A UI passes ``on_progress`` callbacks
for its progress bar and live curves.
"""

from explorer.lab.ablate import (
    AblationError,
    AblationProgress,
    AblationResult,
    RunRecord,
    SummaryRow,
    Variant,
    load_ablation,
    make_variants,
    parse_vary,
    run_ablation,
    summary_markdown,
    write_results,
    write_tables,
)
from explorer.lab.checkpoints import DIGITS_CHECKPOINT, checkpoint_metadata, load_trained, save_trained
from explorer.lab.data import (
    DIGITS,
    DataError,
    ImageData,
    digits_samples,
    load_data,
    preprocess_images,
    to_model_input,
)
from explorer.lab.figures import ablation_figure, training_figure
from explorer.lab.train import (
    METRICS,
    EpochStats,
    Progress,
    TrainConfig,
    TrainError,
    TrainResult,
    evaluate,
    fit_spec_to_data,
    predict,
    train,
)

__all__ = [
    "DIGITS", "DIGITS_CHECKPOINT", "METRICS", "AblationError", "AblationProgress", "AblationResult", "DataError",
    "EpochStats", "ImageData", "Progress", "RunRecord", "SummaryRow", "TrainConfig", "TrainError", "TrainResult",
    "Variant", "ablation_figure", "checkpoint_metadata", "digits_samples", "evaluate", "fit_spec_to_data",
    "load_ablation", "load_data", "load_trained", "make_variants", "parse_vary", "predict", "preprocess_images",
    "run_ablation", "save_trained", "summary_markdown", "to_model_input", "train", "training_figure",
    "write_results", "write_tables",
]
