#!/usr/bin/env bash
# The whole local loop: fetch MiniLM, train on the demo data, serve, send every sample payload, stop.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--docker | --local] [--port PORT] [-h]

  1. scripts/fetch-minilm.sh         all-MiniLM-L6-v2 into the 'pretrained' channel
  2. local_test/train-local.sh       fine-tune on the demo intents (billing, delivery, technical)
  3. local_test/serve-local.sh       start the server in the background
  4. local_test/predict.sh           /ping, then every payload in local_test/payloads
  5. stop the server
Docker is used when a daemon answers, unless --local (or USE_DOCKER=0) is given.
USAGE
}

port=8080
parse_args mode port -- "$@"
# The scripts below run as child processes and decide again: hand them the choice.
case "${MODE}" in
    docker) export USE_DOCKER=1 ;;
    local) export USE_DOCKER=0 ;;
esac

"${REPO_ROOT}/scripts/fetch-minilm.sh" "${TEST_DIR}/input/data/pretrained"
"${LOCAL_TEST_DIR}/train-local.sh"
echo "== metrics: ${TEST_DIR}/output/data"
ls "${TEST_DIR}/output/data" 2>/dev/null || true

"${LOCAL_TEST_DIR}/serve-local.sh" --port "${port}" &
server_pid=$!
stop_server() {
    if kill -0 "${server_pid}" 2>/dev/null; then
        kill -TERM "${server_pid}"
        wait "${server_pid}" || true
    fi
}
trap stop_server EXIT

# The first start loads the model in every worker; allow for a slow machine.
"${LOCAL_TEST_DIR}/predict.sh" --port "${port}" --wait 180
