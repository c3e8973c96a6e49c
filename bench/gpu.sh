#!/usr/bin/env bash
# The GPU benchmark in one run (make bench-gpu; issue 26): install what is missing from local wheels, generate TAU-like
# media, extract the seed visual + audio set (random weights, bf16) with CPU decode workers and with NVDEC, and write
# bench/results-cuda-<gpu>.{md,json} (bench/gpu.py). Sized for 8 minutes on one GPU with the default 64 clips.
#
#   bench/gpu.sh [--dry-run] [--clips N] [--wheels DIR]
#   bench/gpu.sh --fetch-wheels [--wheels DIR]   # on a machine with pip access: download the wheels an offline GPU
#                                                # machine lacks (Python 3.12, manylinux x86-64) into DIR (.whl)
#
# Offline GPU machines (no index): the wheels in DIR (default .whl, ignored by git) are installed with
# pip --no-index --no-deps into /tmp/avscene-site, beside the machine's own torch, which is kept. torchcodec must match
# that torch: set TORCHCODEC_VERSION when fetching (0.17.0 pairs with torch 2.14.1, the pin; the script stops with
# torchcodec's own message when its import fails). --dry-run prints every step and runs none.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WHEELS=.whl
CLIPS=64
DRY_RUN=0
FETCH=0
TORCHCODEC_VERSION=${TORCHCODEC_VERSION:-0.17.0}
# what the GPU image lacks (docs/benchmarks.md): PyAV, Zarr 3 and its codecs, soundfile (+ cffi), open_clip, torchcodec
WHEEL_SPECS=("av==18.1.0" "zarr==3.1.6" "numcodecs==0.16.6" "donfig==0.8.1.post1" "google-crc32c==1.9.0" "soundfile==0.14.0"
             "cffi==2.1.1" "pycparser==3.12" "open-clip-torch==3.3.0" "ftfy==6.3.1" "wcwidth==0.9.5"
             "torchcodec==${TORCHCODEC_VERSION}")

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --fetch-wheels) FETCH=1 ;;
    --clips) CLIPS=${2:?--clips needs a number}; shift ;;
    --wheels) WHEELS=${2:?--wheels needs a folder}; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$CLIPS" in ''|*[!0-9]*) echo "bench/gpu.sh: --clips must be a positive integer, got $CLIPS" >&2; exit 2 ;; esac

step() {  # print a step; run it unless --dry-run
  echo "+ $*"
  if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}

if [ "$FETCH" -eq 1 ]; then
  step "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "${WHEEL_SPECS[@]}"
  exit 0
fi

SITE=/tmp/avscene-site
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  step "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no wheels in $WHEELS: using the packages already installed"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
step "$PYTHON" -c "import torch, av, zarr, soundfile, open_clip; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'PyAV', av.__version__)"
# torchcodec also needs FFmpeg's shared libraries (libavcodec...); without them the NVDEC run is reported as not run
step "$PYTHON" -c "import torchcodec.decoders, torchcodec; print('torchcodec', torchcodec.__version__)" \
  || echo "torchcodec does not load here: the NVDEC run will be reported as not run"
if [ "$DRY_RUN" -eq 0 ]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; fi
PYTHONUNBUFFERED=1 "$PYTHON" -m bench.gpu --clips "$CLIPS" $([ "$DRY_RUN" -eq 1 ] && echo --dry-run)
