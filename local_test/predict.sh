#!/usr/bin/env bash
# Send the sample payloads in local_test/payloads to a running server (serve-local.sh).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

payload_dir="${LOCAL_TEST_DIR}/payloads"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--host HOST] [--port PORT] [--wait SECONDS] [--accept TYPE] [PAYLOAD...]

Checks GET /ping, then POSTs each PAYLOAD (default: every file directly in ${payload_dir};
text-pairs/ holds a pair payload for models trained on text pairs, which a single-text model
answers with 400) to /invocations with the content type its extension names:
  .json  application/json         (HF shape {"inputs": ...}: single, batch, pairs; or a bare list)
  .jsonl application/jsonlines    (one record per line, as Batch Transform sends)
  .csv   text/csv                 (one text per row)
  .txt   text/plain
and prints the status and the response. Exits 1 if any request is not answered 2xx.

Options:
  --host HOST       default localhost
  --port PORT       default 8080 (or \$PORT)
  --wait SECONDS    first wait up to SECONDS for /ping to answer 200 (default 0)
  --accept TYPE     Accept header (default: application/json; jsonlines for .jsonl)
USAGE
}

host="localhost"
port="${PORT:-8080}"
wait_s=0
accept=""
# This script's own options, for parse_args.
script_option() {
    case "$1" in
        --host) host="$2" ;;
        --wait) wait_s="$2" ;;
        --accept) accept="$2" ;;
    esac
}
MISSING_VALUE_STATUS=2 # what a missing value has always exited with here
parse_args port --host= --wait= --accept= operands -- "$@"
payloads=("${OPERANDS[@]}")
[[ "${wait_s}" =~ ^[0-9]+$ ]] || {
    echo "--wait must be a number of seconds" >&2
    exit 2
}
if [[ ${#payloads[@]} -eq 0 ]]; then
    for payload in "${payload_dir}"/*; do
        [[ -f "${payload}" ]] && payloads+=("${payload}")
    done
fi

base="http://${host}:${port}"

content_type_of() {
    case "$1" in
        *.json) echo "application/json" ;;
        *.jsonl) echo "application/jsonlines" ;;
        *.csv) echo "text/csv" ;;
        *.txt) echo "text/plain" ;;
        *) return 1 ;;
    esac
}

deadline=$((SECONDS + wait_s))
until ping_status="$(curl -s -o /dev/null -w '%{http_code}' "${base}/ping")" && [[ "${ping_status}" == "200" ]]; do
    if ((SECONDS >= deadline)); then
        echo "GET ${base}/ping: status ${ping_status:-none} (server not ready or not running: local_test/serve-local.sh)" >&2
        exit 1
    fi
    sleep 1
done
echo "GET ${base}/ping -> 200"

failed=0
for payload in "${payloads[@]}"; do
    [[ -f "${payload}" ]] || {
        echo "no such payload file: ${payload}" >&2
        failed=1
        continue
    }
    if ! content_type="$(content_type_of "${payload}")"; then
        echo "skipping ${payload}: unknown extension (use .json, .jsonl, .csv or .txt)" >&2
        continue
    fi
    if [[ -n "${accept}" ]]; then
        accept_type="${accept}"
    elif [[ "${content_type}" == "application/jsonlines" ]]; then
        accept_type="application/jsonlines"
    else
        accept_type="application/json"
    fi
    echo
    echo "== POST /invocations  $(basename "${payload}")  Content-Type: ${content_type}  Accept: ${accept_type}"
    body_file="$(mktemp)"
    status="$(curl -s -o "${body_file}" -w '%{http_code}' -X POST "${base}/invocations" \
        -H "Content-Type: ${content_type}" -H "Accept: ${accept_type}" --data-binary "@${payload}")" || status="000"
    echo "status ${status}"
    cat "${body_file}"
    echo
    rm -f "${body_file}"
    [[ "${status}" == 2* ]] || failed=1
done
exit "${failed}"
