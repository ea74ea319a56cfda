"""The user attributes a sweep writes on its Optuna trials, named once for writers and readers
(as :data:`~eeg2bold.run_folder.table.SCHEMA` names the results table's columns).

Optuna keeps what selects (the value: mean validation r) and the parameters; these attributes
tie a trial to everything else the run folder holds.
"""

from __future__ import annotations

TRIAL_ID = "trial_id"  # the one trial identity: files, table rows, log lines
TUNE_TRIAL_ID = "tune_trial_id"  # Ray Tune's id of the latest attempt (differs after a resume)
ORIGIN = "origin"  # "defaults" (trial 0 of every arm), "warm_start" or "sampled"
ORIGIN_SOURCE = "origin_source"  # where a warm start came from (sweep and trial)
FINISHED = "finished"  # ran to its last epoch (so it left model files)
FAILURE_REASON = "failure_reason"
FAILURE_KIND = "failure_kind"  # configuration, training, data, worker, error
ORPHANED = "orphaned"  # left RUNNING by a killed driver, marked FAIL on resume
RETRIES = "retries"  # one event per resumption after a dead worker or node
# copied from a trial's final result
CONFIG_HASH = "config_hash"
TEST_R = "test_r"
EPOCHS_TRAINED = "epochs_trained"
BEST_EPOCH = "best_epoch"
FROM_RESULT = (CONFIG_HASH, TEST_R, EPOCHS_TRAINED, BEST_EPOCH)

SAMPLED = "sampled"  # the origin of a trial nobody enqueued
