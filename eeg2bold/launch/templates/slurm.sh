#!/bin/bash
# eeg2bold sweep "{{name}}" on a multi-node Ray cluster inside one Slurm job.
# Rendered by `eeg2bold launch slurm` (eeg2bold {{version}}, Ray {{ray_version}}) from
#   {{config_display}}
# Dataset:       {{dataset_display}}
# Results:       {{results_display}}
# Optuna:        {{optuna_display}}
# Credentials:   {{credentials_display}}
# Container:     {{container_display}}
#
# Submit with `sbatch THIS_FILE` from a shell where the variables above are set (sbatch passes
# your environment on), or name a file of `export NAME=...` lines only you can read with
# `eeg2bold launch slurm --env-file FILE`. The script refers to credentials by name only.
#
# Ray token authentication stays on: the token comes from $RAY_AUTH_TOKEN if set, otherwise
# from ${RAY_AUTH_TOKEN_PATH:-~/.ray/auth_token} (created, mode 600, if missing; a shared home
# makes it the same file on every node). It is handed to the `ray start` steps through the
# environment, never on a command line, and never printed (do not add `set -x`).
# The dashboard binds to 127.0.0.1 on the head node: `ssh -L 8265:127.0.0.1:8265 HEAD_NODE`.
{{sbatch}}

set -euo pipefail

# -- software environment ------------------------------------------------------------------
{{setup}}

# -- credentials (forwarded by name; the values never appear in this file) -----------------
{{env_file}}
env_names=({{env_names}})
for name in "${env_names[@]}"; do
    if [[ -z "${!name:-}" ]]; then
        echo "eeg2bold: environment variable $name is not set (needed by the study config)" >&2
        exit 1
    fi
    export "${name?}"
done

# -- Ray token authentication (stays on) ----------------------------------------------------
{ set +x; } 2>/dev/null
export RAY_AUTH_MODE=token
if [[ -z "${RAY_AUTH_TOKEN:-}" ]]; then
    token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
    if [[ ! -s "$token_file" ]]; then
        (umask 077 && mkdir -p "$(dirname "$token_file")" &&
            od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$token_file")
        echo "eeg2bold: created a Ray auth token in $token_file" >&2
    fi
    RAY_AUTH_TOKEN="$(<"$token_file")"
    export RAY_AUTH_TOKEN
fi

# -- the Ray cluster: head on the first node, one worker per other node ---------------------
mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_node="${nodes[0]}"
head_ip="$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{print $1}')"
port={{port}}
export RAY_ADDRESS="$head_ip:$port"
num_gpus="${SLURM_GPUS_PER_TASK:-0}"

ray_pids=()
stop_ray() {
    # Ending the `srun ... ray start --block` steps stops Ray on every node.
    if ((${#ray_pids[@]})); then
        kill "${ray_pids[@]}" 2>/dev/null || true
        wait "${ray_pids[@]}" 2>/dev/null || true
    fi
}
trap stop_ray EXIT
trap 'exit 143' TERM INT

echo "eeg2bold: Ray head on $head_node ($RAY_ADDRESS), ${#nodes[@]} node(s)" >&2
srun --nodes=1 --ntasks=1 {{srun_resources}} --overlap --export=ALL -w "$head_node" \
    {{in_step}}ray start --head --node-ip-address="$head_ip" --port="$port" \
    --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="$num_gpus" \
    {{dashboard}} --disable-usage-stats --block &
ray_pids+=($!)

deadline=$((SECONDS + {{node_timeout}}))
until {{on_head}}ray status --address "$RAY_ADDRESS" >/dev/null 2>&1; do
    if ! kill -0 "${ray_pids[0]}" 2>/dev/null || ((SECONDS > deadline)); then
        echo "eeg2bold: the Ray head did not start on $head_node (see the log above)" >&2
        exit 1
    fi
    sleep 5
done

for node in "${nodes[@]:1}"; do
    srun --nodes=1 --ntasks=1 {{srun_resources}} --overlap --export=ALL -w "$node" \
        {{in_step}}ray start --address="$RAY_ADDRESS" \
        --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="$num_gpus" --block &
    ray_pids+=($!)
done

# Wait until every node has joined (the sweep sizes its trials to the cluster it sees).
{{on_head}}python - "$RAY_ADDRESS" "${#nodes[@]}" "$((deadline - SECONDS))" <<'PY'
import sys
import time

import ray

address, want, timeout = sys.argv[1], int(sys.argv[2]), max(float(sys.argv[3]), 30.0)
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + timeout
while (alive := sum(bool(n["Alive"]) for n in ray.nodes())) < want:
    if time.monotonic() > deadline:
        sys.exit(f"eeg2bold: only {alive} of {want} Ray nodes joined in time")
    time.sleep(5)
print(f"eeg2bold: Ray cluster ready ({alive} nodes)", file=sys.stderr)
PY

# -- the sweep (the driver runs here, on the head node) -------------------------------------
status=0
{{on_head}}{{sweep_command}} || status=$?
exit "$status"
