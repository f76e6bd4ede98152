# Sourced by the other bin/ scripts: where things live. Every path can be overridden.
MMKG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MMKG_ROOT
export MMKG_HOME="${MMKG_HOME:-$HOME/.cache/mmkg}"
# The virtual environment lives outside the clone, so clones and CI runs share one install.
export MMKG_VENV="${MMKG_VENV:-$MMKG_HOME/venv}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
# Airflow: the project's airflow.cfg, state (SQLite, logs) under MMKG_HOME.
export AIRFLOW_CONFIG="${AIRFLOW_CONFIG:-$MMKG_ROOT/airflow.cfg}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$MMKG_HOME/airflow}"
# Weights come from installed packages only; never from a hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PATH="$MMKG_VENV/bin:$PATH"
# This clone's code first: the shared venv's editable install points at whichever clone ran
# bin/setup last, and Airflow task processes inherit this (they import extraction/, models/ ...).
export PYTHONPATH="$MMKG_ROOT${PYTHONPATH:+:$PYTHONPATH}"
