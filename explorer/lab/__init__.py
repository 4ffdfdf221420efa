"""The ablation lab: train spec variants on small data and compare their curves (no Streamlit).

``train(spec, load_data("digits", input_size=32, in_channels=3))`` trains a
network with per-epoch curves; ``run_ablation`` trains every variant of the
``--vary`` knobs over several seeds; ``write_results``/``load_ablation`` write and
read its folder of results; ``save_trained``/``load_trained`` write and read
checkpoints that carry their spec (``trained_bytes``: the same file as bytes); the app
reads folders only under the data root (``under_data_root``, ``root_folders``) and
uploaded zips (``unpack_zip``); ``training_figure`` and ``ablation_figure``
draw the curves. A UI passes ``on_progress`` callbacks for its progress bar and
live curves.

Modules, each importing only those to its left: ``data`` → ``train`` →
``checkpoints``, ``figures`` (one training's curves), ``ablate`` (variants, runs,
results as plain data) → ``report`` (an ablation's figure, tables and files) → ``cli``.
"""

from explorer.lab.ablate import (
    AblationError,
    AblationProgress,
    AblationResult,
    RunRecord,
    SummaryRow,
    Variant,
    make_variants,
    parse_vary,
    run_ablation,
)
from explorer.lab.checkpoints import DIGITS_CHECKPOINT, checkpoint_metadata, load_trained, save_trained, trained_bytes
from explorer.lab.data import (
    DIGITS,
    DataError,
    ImageData,
    UnpackedZip,
    data_root,
    digits_samples,
    load_data,
    preprocess_images,
    root_folders,
    to_model_input,
    under_data_root,
    unpack_zip,
)
from explorer.lab.figures import training_figure
from explorer.lab.report import ablation_figure, load_ablation, summary_markdown, write_results, write_tables
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
    "UnpackedZip", "Variant", "ablation_figure", "checkpoint_metadata", "data_root", "digits_samples", "evaluate",
    "fit_spec_to_data", "load_ablation", "load_data", "load_trained", "make_variants", "parse_vary", "predict",
    "preprocess_images", "root_folders", "run_ablation", "save_trained", "summary_markdown", "to_model_input",
    "train", "trained_bytes", "training_figure", "under_data_root", "unpack_zip", "write_results", "write_tables",
]
