"""The Ray adapter: the only modules of eeg2bold that import Ray (its API changes across 2.x;
everything else sees plain dataclasses and callables).

:mod:`.tuner` fits a sweep's one Tuner (every arm's trials); :mod:`.runtime` starts or joins
the cluster, routes Ray's console output and keeps the sweep's pool of fold actors;
:mod:`.trial` is the trainable; :mod:`.arms` the per-arm Optuna searchers and ASHA schedulers;
:mod:`.progress` the Tune callbacks (progress lines, node health, signed state);
:mod:`.fold_actor` the actors on the nodes (without Ray Tune, so they start fast);
:mod:`.tracking` MLflow and W&B through Tune's logger callbacks.
"""
