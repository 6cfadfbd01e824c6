# shellcheck shell=bash
# Shared by train-local.sh, serve-local.sh and demo.sh: where things are and whether to use Docker.
# Source it; it defines variables and functions only.

LOCAL_TEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${LOCAL_TEST_DIR}/.." && pwd)"
TEST_DIR="${TEST_DIR:-${LOCAL_TEST_DIR}/test_dir}"
IMAGE="${IMAGE:-textclf:latest}"
export LOCAL_TEST_DIR REPO_ROOT TEST_DIR IMAGE

# Mode: "docker", "local" or "auto" (Docker when a daemon answers, otherwise local).
MODE="auto"
case "${USE_DOCKER:-}" in
    1 | true | yes) MODE="docker" ;;
    0 | false | no) MODE="local" ;;
    "") ;;
    *)
        echo "USE_DOCKER must be 1 or 0, got '${USE_DOCKER}'" >&2
        exit 2
        ;;
esac

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

docker_available() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Decide the mode once; prints what it chose so a log shows which path ran.
resolve_mode() {
    if [[ "${MODE}" == "auto" ]]; then
        if docker_available; then MODE="docker"; else MODE="local"; fi
    fi
    if [[ "${MODE}" == "docker" ]] && ! docker_available; then
        die "--docker/USE_DOCKER=1 given, but no Docker daemon answers (docker info failed)"
    fi
    if [[ "${MODE}" == "docker" ]]; then
        echo "$(basename "$0"): running in Docker, image ${IMAGE}" >&2
    else
        echo "$(basename "$0"): running locally, SM_ROOT=${TEST_DIR}" >&2
    fi
}

# The textclf entry point of the local environment: the repository's venv, else PATH.
textclf_bin() {
    if [[ -n "${TEXTCLF:-}" ]]; then
        echo "${TEXTCLF}"
    elif [[ -x "${REPO_ROOT}/.venv/bin/textclf" ]]; then
        echo "${REPO_ROOT}/.venv/bin/textclf"
    elif command -v textclf >/dev/null 2>&1; then
        command -v textclf
    else
        die "no textclf entry point: run 'make setup' (creates .venv) or set TEXTCLF=/path/to/textclf"
    fi
}

# Build IMAGE from the repository when it does not exist yet. DOCKER_BUILD_ARGS adds arguments,
# e.g. DOCKER_BUILD_ARGS="--target serve" or "--build-arg BASE_IMAGE=...".
ensure_image() {
    if docker image inspect "${IMAGE}" >/dev/null 2>&1; then
        return
    fi
    local -a extra=()
    read -r -a extra <<<"${DOCKER_BUILD_ARGS:-}"
    echo "$(basename "$0"): image ${IMAGE} not found, building it from ${REPO_ROOT}" >&2
    docker build "${extra[@]}" -t "${IMAGE}" "${REPO_ROOT}"
}

# Network arguments for docker run: DOCKER_NETWORK (e.g. host, none) when set, else Docker's default.
# shellcheck disable=SC2034  # used by the scripts that source this file
NETWORK_ARGS=()
if [[ -n "${DOCKER_NETWORK:-}" ]]; then
    # shellcheck disable=SC2034
    NETWORK_ARGS=("--network=${DOCKER_NETWORK}")
fi
