"""The run folder contract, below training, launch, study and predict: paths and file names,
the results table, model files and their cards, resolved configs, resume markers and atomic
writes. Everything that reads or writes what a run leaves behind goes through here.
"""

from eeg2bold.run_folder.cards import MODEL_FORMAT, ModelFileError, read_card
from eeg2bold.run_folder.files import absolute, write_bytes, write_json
from eeg2bold.run_folder.folder import PredictionFiles, RunFolder, fold_stem
from eeg2bold.run_folder.table import COLUMNS, ROW_KEY, SCHEMA, ResultsWriter, read_results

__all__ = [
    "COLUMNS",
    "MODEL_FORMAT",
    "ROW_KEY",
    "SCHEMA",
    "ModelFileError",
    "PredictionFiles",
    "ResultsWriter",
    "RunFolder",
    "absolute",
    "fold_stem",
    "read_card",
    "read_results",
    "write_bytes",
    "write_json",
]
