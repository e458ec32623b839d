#!/usr/bin/env bash
# Builds `emoarc` with `--features cuda` on a machine that has no GPU and no system CUDA toolkit.
# The GPU hosts that run emoarc have a CUDA driver but no Rust toolchain and no package registry, so the
# CUDA binary is built here and carried over. This script puts together a CUDA 13.0 toolkit from pinned
# pip wheels (only the CUDA 13 wheels ship nvcc and cicc; the -cu12 ones ship ptxas alone), matching the
# GPU hosts' 13.0 driver and libraries. It also generates a stub libcuda.so for the linker (the real one
# comes with the driver), writes the environment cargo needs to $CUDA_PREFIX/env.sh and, with --build,
# runs `cargo build --release --features cuda`. Running it a second time is quick.
#
# Usage: scripts/setup-cuda.sh [--build]
#   CUDA_PREFIX       where the venv, the CUDA root and env.sh go (default /tmp/emoarc-cuda)
#   CUDA_COMPUTE_CAP  GPU architecture to build kernels for; there is no GPU here to ask (default 90, H100/H200)
#   CARGO_TARGET_DIR  cargo's target folder for --build (default target-cuda/ in the repository)
#   CARGO_BUILD_JOBS  passed through to cargo; also caps the parallel nvcc jobs of candle-kernels' build
#   PYTHON            the Python that creates the venv (default python3)
# Then: `source $CUDA_PREFIX/env.sh` gives nvcc and the variables for any later cargo command.
set -euo pipefail

CUDA_PREFIX=${CUDA_PREFIX:-/tmp/emoarc-cuda}
CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BUILD=0
for arg in "$@"; do
    case $arg in
        --build) BUILD=1 ;;
        -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup-cuda.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

# CUDA 13.0 Update 2, one component version each. 13.0 is what the GPU hosts' driver (580) and toolkit run;
# PTX from a newer nvcc would not load on that driver.
PINS=(
    nvidia-cuda-nvcc==13.0.88     # nvcc, ptxas, fatbinary, nvlink
    nvidia-cuda-crt==13.0.88      # include/crt (host/device compiler headers)
    nvidia-nvvm==13.0.88          # nvvm/bin/cicc, libdevice
    nvidia-cuda-runtime==13.0.96  # cuda_runtime.h, cuda.h, cuda_fp16/bf16/fp8.h, libcudart
    nvidia-cuda-nvrtc==13.0.88    # libnvrtc (cudarc)
    nvidia-cublas==13.1.0.3       # libcublas, libcublasLt (cudarc)
    nvidia-curand==10.4.0.35      # libcurand (cudarc)
    nvidia-cuda-cccl==13.0.85     # include/cccl: cub, thrust, libcu++
)
PIN_LIST=$(printf '%s\n' "${PINS[@]}" | sed 's/ *#.*//' | sort)

VENV=$CUDA_PREFIX/venv
ROOT=$CUDA_PREFIX/cuda
say() { echo "setup-cuda: $*" >&2; }

# 1. venv with the pinned wheels (skipped when the stamp says they are already there)
STAMP=$CUDA_PREFIX/.pins
if [[ -x $VENV/bin/python && -f $STAMP && "$(cat "$STAMP")" == "$PIN_LIST" ]]; then
    say "wheels already installed in $VENV"
else
    say "installing CUDA wheels into $VENV"
    mkdir -p "$CUDA_PREFIX"
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086
    nice -n 19 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps $PIN_LIST
    echo "$PIN_LIST" >"$STAMP"
fi
WHEELS=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[[ -x $WHEELS/bin/nvcc && -x $WHEELS/nvvm/bin/cicc ]] || { say "no nvcc/cicc under $WHEELS"; exit 1; }

# 2. a CUDA root laid out like /usr/local/cuda. nvcc reads bin/nvcc.profile next to the path it was
#    called by (symlinks are not resolved), so bin/ holds links and include/, nvvm/ sit beside it.
mkdir -p "$ROOT/bin" "$ROOT/lib64/stubs"
for f in "$WHEELS"/bin/*; do ln -sfn "$f" "$ROOT/bin/$(basename "$f")"; done
ln -sfn "$WHEELS/include" "$ROOT/include"
ln -sfn "$WHEELS/nvvm" "$ROOT/nvvm"
ln -sfn lib64 "$ROOT/lib" 2>/dev/null || true
for f in "$WHEELS"/lib/*.so.*; do
    name=$(basename "$f")
    ln -sfn "$f" "$ROOT/lib64/$name"                                    # libcublas.so.13
    case $name in *.alt.*|libnvrtc-builtins*) continue ;; esac
    ln -sfn "$name" "$ROOT/lib64/${name%%.so.*}.so"                     # libcublas.so -> libcublas.so.13
done
for f in "$WHEELS"/lib/*.a; do ln -sfn "$f" "$ROOT/lib64/$(basename "$f")"; done

# 3. libcuda.so is the driver's, so no wheel has it: candle links it (cudarc's dynamic-linking), and the
#    linker only needs its symbols. Generate a stub with every driver entry point of cuda.h, each
#    returning CUDA_ERROR_STUB_LIBRARY (34), with the real library's soname libcuda.so.1.
STUB=$ROOT/lib64/stubs/libcuda.so
if [[ ! -f $STUB || $WHEELS/include/cuda.h -nt $STUB ]]; then
    say "generating $STUB"
    tmp=$(mktemp -d)
    {
        gcc -E -P -x c "$WHEELS/include/cuda.h"
        gcc -E -P -x c -D__CUDA_API_VERSION_INTERNAL "$WHEELS/include/cuda.h"
    } | tr '\n' ' ' | grep -oE 'CUresult +cu[A-Za-z0-9_]+ *\(' | sed -E 's/CUresult +//; s/ *\(//' |
        grep -vxE 'cuGetErrorString|cuGetErrorName' | sort -u >"$tmp/names"
    {
        echo '/* generated by scripts/setup-cuda.sh: link-time stand-in for the driver library */'
        echo 'int cuGetErrorString(int e, const char **s) { *s = e == 34 ? "CUDA driver is a stub library (no NVIDIA driver on this machine)" : "unknown CUDA error (stub library)"; return 0; }'
        echo 'int cuGetErrorName(int e, const char **s) { *s = e == 34 ? "CUDA_ERROR_STUB_LIBRARY" : "CUDA_ERROR_UNKNOWN"; return 0; }'
        sed 's/.*/int &(void) { return 34; }/' "$tmp/names"
    } >"$tmp/stub.c"
    gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$tmp/libcuda.so" "$tmp/stub.c"
    mv "$tmp/libcuda.so" "$STUB"
    ln -sfn libcuda.so "$ROOT/lib64/stubs/libcuda.so.1"
    say "stub exports $(wc -l <"$tmp/names") driver functions"
    rm -rf "$tmp"
fi

# 4. environment for cargo: cudarc reads CUDA_ROOT/CUDA_PATH/CUDA_HOME for its link paths and
#    `nvcc --version` for the CUDA version; cudaforge (candle-kernels' build) finds nvcc on PATH and
#    takes the GPU architecture from CUDA_COMPUTE_CAP when nvidia-smi is absent.
cat >"$CUDA_PREFIX/env.sh" <<EOF
# generated by scripts/setup-cuda.sh; source it before cargo build --features cuda
export CUDA_ROOT=$ROOT CUDA_PATH=$ROOT CUDA_HOME=$ROOT
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-$CUDA_COMPUTE_CAP}
case ":\$PATH:" in *":$ROOT/bin:"*) ;; *) export PATH=$ROOT/bin:\$PATH ;; esac
case ":\${LD_LIBRARY_PATH:-}:" in *":$ROOT/lib64:"*) ;; *) export LD_LIBRARY_PATH=$ROOT/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} ;; esac
# The binary needs libcuda.so.1 to start. Where there is no driver, let the stub stand in, so that CPU runs
# work and '--device cuda' reports the missing driver; never where a real libcuda.so.1 exists.
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
    case ":\$LD_LIBRARY_PATH:" in *":$ROOT/lib64/stubs:"*) ;; *) export LD_LIBRARY_PATH=\$LD_LIBRARY_PATH:$ROOT/lib64/stubs ;; esac
fi
EOF
if [[ -n ${CARGO_BUILD_JOBS:-} ]]; then
    echo "export CUDAFORGE_THREADS=\${CUDAFORGE_THREADS:-$CARGO_BUILD_JOBS}" >>"$CUDA_PREFIX/env.sh"
fi
# shellcheck disable=SC1091
source "$CUDA_PREFIX/env.sh"
say "$(nvcc --version | tail -2 | head -1)"
say "environment written to $CUDA_PREFIX/env.sh (source it); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"

# a quick check that the assembled toolkit compiles device code (cached on the pins and compute cap)
CHECK=$CUDA_PREFIX/.nvcc-ok
if [[ ! -f $CHECK || "$(cat "$CHECK")" != "$PIN_LIST $CUDA_COMPUTE_CAP" ]]; then
    tmp=$(mktemp -d)
    cat >"$tmp/t.cu" <<'EOF'
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cub/block/block_reduce.cuh>
extern "C" __global__ void twice(__half *x) { x[threadIdx.x] = __hadd(x[threadIdx.x], x[threadIdx.x]); }
EOF
    nvcc --ptx -std=c++17 -arch="sm_$CUDA_COMPUTE_CAP" -o "$tmp/t.ptx" "$tmp/t.cu"
    grep -q '\.entry twice' "$tmp/t.ptx"
    rm -rf "$tmp"
    echo "$PIN_LIST $CUDA_COMPUTE_CAP" >"$CHECK"
    say "nvcc compiles .cu files for sm_$CUDA_COMPUTE_CAP"
fi

# 5. the build
if ((BUILD)); then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-cuda}
    say "cargo build --release --features cuda (target dir $CARGO_TARGET_DIR)"
    cd "$REPO"
    nice -n 19 cargo build --release --features cuda
    say "built $CARGO_TARGET_DIR/release/emoarc"
fi
