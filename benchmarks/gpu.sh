#!/usr/bin/env bash
# The GPU check: cifarkit on the JAX backend on a bare GPU machine that has JAX
# (with CUDA), numpy, Pillow, pluggy, rich, matplotlib, h5py and setuptools,
# but no TensorFlow and no network. Everything else travels with the checkout:
#
#   .whl/   keras, namex, optree, tomli-w wheels (pip download --no-deps ...)
#   .data/cifar10-jpeg.tar.gz   (../shared/data's CIFAR-10 JPEG copy)
#
#   bash benchmarks/gpu.sh [OUT_DIR]
#
# With a fresh compilation cache (under OUT_DIR): recipes/fast.toml three times
# (seeds 42, 1, 2; the first run compiles, the others find the cache warm), the
# default recipe unchanged for 3 epochs, and benchmarks/overhead.py on the
# airbench model; then one table (gpu_table.py), with airbench94's recorded row.
# The run directories, overhead.json and table.md land in OUT_DIR (default
# /tmp/cifarkit-gpu). QUICK=1 rehearses it on a CPU: 4,096 images, 2 epochs each.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/cifarkit-gpu}
SITE=$OUT/site
mkdir -p "$OUT"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
if ! python3 -c "import keras, namex, optree, tomli_w" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl
fi
# cifarkit itself, with its entry points (the built-in plugins), without network or deps
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade \
  --target "$SITE" . >/dev/null
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
DATA=$(python3 benchmarks/cifar10_jpeg.py .data/cifar10-jpeg.tar.gz "$OUT/data")
export XDG_CACHE_HOME=$OUT/cache  # a fresh compilation cache: the first run is cold
rm -rf "$XDG_CACHE_HOME" "$OUT"/runs-*
SETS=(--set "data.path=$DATA")
FAST_EPOCHS=10; DEFAULT_EPOCHS=3; OVERHEAD=(--batch 1024 --steps 40 --epochs 4)
if [ "${QUICK:-0}" = 1 ]; then
  SETS+=(--set data.limit=4096); FAST_EPOCHS=2; DEFAULT_EPOCHS=2
  OVERHEAD=(--batch 128 --steps 8 --epochs 3)
fi
run() {  # NAME RECIPE ARGS...: one cifarkit run, its whole wall time (start-up and compilation included)
  local name=$1; shift
  local t0=$(date +%s.%N)
  python3 -m cifarkit run "$@" --backend jax "${SETS[@]}" -o "$OUT/runs-$name" \
    || { echo "run $name failed" >&2; return 0; }  # the others still run
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)" \
    > "$OUT/runs-$name.wall_s"
}
for seed in 42 1 2; do
  run "fast-$seed" recipes/fast.toml --set train.epochs=$FAST_EPOCHS --set seed=$seed
done
run default recipes/default.toml --set train.epochs=$DEFAULT_EPOCHS
python3 benchmarks/overhead.py --backend jax --data "$DATA" --model airbench "${OVERHEAD[@]}" \
  --json "$OUT/overhead.json" || echo "overhead.py failed" >&2
python3 benchmarks/gpu_table.py "$OUT" | tee "$OUT/table.md"
