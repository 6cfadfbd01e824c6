#!/usr/bin/env bash
# Install the Hugging Face SageMaker inference toolkit (the peer a SageMaker user would otherwise
# deploy) into its own venv, apart from the product's .venv. Pins as in the released DLC
# 2.6.0-transformers4.51.3-cpu: transformers 5.x breaks the toolkit at import (is_tf_available),
# setuptools >= 82 lacks the pkg_resources that multi-model-server imports. Needs Java
# (Debian: apt-get install -y default-jre-headless) to run, not to install.
#
# Usage: bench/peers/install-hf-peer.sh [VENV]   (default bench/.work/.venv-peer)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-${repo_root}/bench/.work/.venv-peer}"
python="${PYTHON:-python3}"
if [[ -x "${venv}/bin/serve" ]]; then
    echo "install-hf-peer: ${venv} already has the toolkit"
    exit 0
fi
"${python}" -m venv "${venv}"
"${venv}/bin/pip" install -q torch==2.13.0
"${venv}/bin/pip" install -q torch==2.13.0 \
    "sagemaker-huggingface-inference-toolkit[transformers,mms]==2.6.0" \
    "transformers[sentencepiece,sklearn]==4.51.3" "setuptools<82"
command -v java >/dev/null || echo "install-hf-peer: warning: no java on PATH; the toolkit's model server needs it" >&2
echo "install-hf-peer: toolkit installed in ${venv}"
