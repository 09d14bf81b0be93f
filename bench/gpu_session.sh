#!/usr/bin/env bash
# Every GPU figure of the scoring engine in one run: about 9 minutes on one H100/H200 (8.2 B-parameter
# OneAlign with random weights, bf16, 448 px; 16 CPU cores).
#
#   bash bench/gpu_session.sh [all|images|video|tests] [OUT_DIR]
#
# images: model alone and the whole engine (1,536 generated 448x448 JPEGs, batch 64, 14 decoding workers)
#         with eager attention, with SDPA, and with SDPA plus torch.compile of the image path (CUDA graphs);
#         each run prints the time to the first batch after the weights are loaded and the profiler's
#         breakdown by stage (device time per stage).
# video:  96 generated 8-second 960x540 H.264 clips (1 fps -> 8 frames each), decord in the workers:
#         videos/s, frames/s, the engine's share of the model-alone frames/s, decord frames/s per worker.
# tests:  the GPU-only test of the compile switch (CUDA graphs) and the parity tests on the GPU.
#
# Needs python3 with torch (CUDA), transformers 5, decord and PyAV; on a machine without internet carry
# them as wheels (decord==0.6.0 and av==18.1.0 for CPython 3.12, manylinux x86-64) and install them with
# pip --no-index before running this. Figures go to stdout and OUT_DIR/*.log.
set -uo pipefail

PART=${1:-all}
OUT_DIR=${2:-${OUT:-/tmp/qalign-gpu}}
PY=${PY:-python3}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false

"$PY" - <<'EOF' || exit 1
import torch, transformers
missing = [m for m in ("decord", "av") if __import__("importlib").util.find_spec(m) is None]
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.cuda.is_available()}")
if missing or not torch.cuda.is_available():
    raise SystemExit(f"cannot run: missing {missing or ''} {'' if torch.cuda.is_available() else 'no CUDA device'}")
print(torch.cuda.get_device_name(0))
EOF

MODEL="$OUT_DIR/one-align-size"
[ -f "$MODEL/config.json" ] || "$PY" bench/full_size_onealign.py tests/fixtures/onealign-tiny "$MODEL" >/dev/null
COMMON=(--models "$MODEL" --random-init --device cuda --dtype bfloat16)

if [ "$PART" = all ] || [ "$PART" = tests ]; then
    "$PY" -m pytest -q -p no:cacheprovider tests/test_engine_options.py -k gpu 2>&1 | tail -3 | tee "$OUT_DIR/tests.log"
fi

if [ "$PART" = all ] || [ "$PART" = images ]; then
    for step in "eager off" "sdpa off" "sdpa auto"; do
        set -- $step
        echo "=== images: attention $1, compile $2 ==="
        "$PY" bench/engine_profile.py "${COMMON[@]}" --attention "$1" --compile "$2" --size 448x448 \
            --images 1536 --batch-size 64 --num-workers 14 --model-batch-sizes 32,64 2>&1 \
            | grep -v "Loading weights" | tee "$OUT_DIR/images-$1-$2.log"
    done
fi

if [ "$PART" = all ] || [ "$PART" = video ]; then
    echo "=== video: 8 s 960x540 H.264, 1 fps ==="
    "$PY" bench/video_throughput.py "${COMMON[@]}" --videos 96 --gen-processes 14 --batch-size 8 \
        --num-workers 14 --repeats 2 --clips "$OUT_DIR/clips" 2>&1 | grep -v "Loading weights" \
        | tee "$OUT_DIR/video.log"
fi
