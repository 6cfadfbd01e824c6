#!/usr/bin/env bash
# Serve local_test/test_dir/model on http://localhost:PORT (nginx -> gunicorn -> Flask).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--docker | --local] [--port PORT] [-h]

Serves the model in ${TEST_DIR}/model exactly as a SageMaker endpoint runs the image:
  Docker: docker run --user \$(id -u):\$(id -g) -p PORT:8080 -v TEST_DIR/model:/opt/ml/model IMAGE serve
  local:  SM_ROOT=TEST_DIR textclf serve      (same entry point, from .venv)
Stop it with Ctrl-C. Send requests with local_test/predict.sh.

Options:
$(usage_mode_options 14)
  --port PORT   port on this machine (default 8080). With DOCKER_NETWORK=host or locally,
                the server itself binds PORT through SAGEMAKER_BIND_TO_PORT.
$(usage_environment "DOCKER_NETWORK (host: no port mapping), DOCKER_BUILD_ARGS, CONTAINER_NAME.")
USAGE
}

port=8080
parse_args mode port -- "$@"
[[ "${port}" =~ ^[0-9]+$ ]] || die "--port must be a number, got '${port}'"
compgen -G "${TEST_DIR}/model/*" >/dev/null || die "${TEST_DIR}/model is empty: run local_test/train-local.sh first"

resolve_mode
if [[ "${MODE}" == "docker" ]]; then
    ensure_image
    if [[ "${DOCKER_NETWORK:-}" == "host" ]]; then
        port_args=(-e "SAGEMAKER_BIND_TO_PORT=${port}")
    else
        port_args=(-p "${port}:8080")
    fi
    # docker run passes SIGINT/SIGTERM on to the container, which shuts down gracefully.
    exec docker run --rm --name "${CONTAINER_NAME:-textclf-serve-local}" "${NETWORK_ARGS[@]}" "${port_args[@]}" \
        "${DOCKER_USER_ARGS[@]}" -v "${TEST_DIR}/model:/opt/ml/model:ro" "${IMAGE}" serve
else
    SM_ROOT="${TEST_DIR}" SAGEMAKER_BIND_TO_PORT="${port}" exec "$(textclf_bin)" serve
fi
