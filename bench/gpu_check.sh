#!/usr/bin/env bash
# The GPU check of skyrm (issue 8), as run on the lent GPU machine from the repository root:
#
#   bash bench/gpu_check.sh [bench/gpu_check.py flags]     # prints the table; JSON in $OUT/gpu_check.json
#   bash bench/gpu_check.sh --fetch-wheels                 # here, with PyPI: TRL's wheels into bench/wheels/
#   bash bench/gpu_check.sh --no-trl --steps 5 --budget-s 540 --only profile-1b,skyrm-3b-flexc+ac0,memory-8b
#                                                          # issue 21's runs (docs/benchmarks.md, GPU round 2)
#
# The GPU machine has torch, transformers and pyarrow but no network: TRL comes from the wheels carried in
# bench/wheels/ (git-ignored; carry it with the run), with a copy of the UltraFeedback pairs the runs train on.
# Without them the check runs without the TRL comparison, on synthetic pairs of the same length spread.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"  # the GPU machine's torch is in its python3

if [ "${1:-}" = "--fetch-wheels" ]; then
    # TRL and what it needs beyond torch and transformers, for Python 3.12 on x86-64 Linux
    rm -rf bench/wheels && mkdir -p bench/wheels
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d bench/wheels \
        "trl==$("$PY" -c 'import trl; print(trl.__version__)')" datasets accelerate dill multiprocess xxhash \
        pandas python-dateutil pytz tzdata six psutil fsspec aiohttp aiohappyeyeballs aiosignal attrs frozenlist \
        multidict propcache yarl idna requests urllib3 certifi charset-normalizer jinja2 markupsafe liger-kernel
    # fallbacks for an older pyarrow (< 24) or huggingface_hub on the GPU machine: pip picks what fits
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform any -d bench/wheels \
        "datasets>=4.7,<5" "fsspec==2026.2.0"
    # and the real pairs, since ../shared does not travel to the GPU machine
    cp ../shared/data/prefs/ultrafeedback_binarized_1200/train_clean.jsonl bench/wheels/
    du -sh bench/wheels
    exit 0
fi

if [[ " $* " != *" --no-trl "* ]] && ! "$PY" -c "import trl" 2>/dev/null && [ -d bench/wheels ]; then
    "$PY" -m pip install --quiet --no-index --find-links bench/wheels trl \
        || echo "the carried wheels did not install: TRL is left out" >&2
fi
if ! "$PY" -c "import liger_kernel" 2>/dev/null && [ -d bench/wheels ]; then  # Triton comes with the GPU's torch
    "$PY" -m pip install --quiet --no-index --no-deps --find-links bench/wheels liger-kernel \
        || echo "the carried liger-kernel wheel did not install: Liger is left out" >&2
fi
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
exec "$PY" bench/gpu_check.py --out "${OUT:-.}/gpu_check.json" "$@"
