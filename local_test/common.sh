# shellcheck shell=bash
# Shared by the local_test scripts: where things are, whether to use Docker, and the command line.
# Source it; it defines variables and functions only.

LOCAL_TEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${LOCAL_TEST_DIR}/.." && pwd)"
DEFAULT_IMAGE="textclf:latest"
TEST_DIR="${TEST_DIR:-${LOCAL_TEST_DIR}/test_dir}"
IMAGE="${IMAGE:-${DEFAULT_IMAGE}}"
export LOCAL_TEST_DIR REPO_ROOT TEST_DIR IMAGE

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

# A command-line error: the reason on one line, then the script's usage, on stderr; exit 2.
usage_error() {
    echo "$(basename "$0"): error: $*" >&2
    usage >&2
    exit 2
}

# Exit status for an option given without its value: 1, as die; predict.sh sets its own 2.
MISSING_VALUE_STATUS=1

# parse_args SPEC... -- ARGS...
# Parses the calling script's command line in one pass, in order, so that an error or --help takes
# effect where it stands and an option's value is never taken for an option. SPEC words:
#   mode      --docker / --local: set MODE (from USE_DOCKER otherwise, see init_mode)
#   port      --port PORT: sets port (the script sets its default first)
#   operands  non-option arguments go, in order, to OPERANDS (otherwise they are an error)
#   -NAME     one of the script's own options, -NAME= one that takes a value: handed, with the
#             value, to the script's function script_option NAME [VALUE]
# -h/--help prints the script's usage() and exits 0; anything else is a usage_error.
parse_args() {
    local want_mode=0 want_port=0 want_operands=0
    local -a flags=() valued=()
    while [[ "$1" != "--" ]]; do
        case "$1" in
            mode) want_mode=1 ;;
            port) want_port=1 ;;
            operands) want_operands=1 ;;
            -*=) valued+=("${1%=}") ;;
            -*) flags+=("$1") ;;
            *) die "parse_args: unknown SPEC word '$1'" ;;
        esac
        shift
    done
    shift
    # Before any option, so that a bad USE_DOCKER fails even with --help, as it always has.
    if ((want_mode)); then
        init_mode
    fi
    # shellcheck disable=SC2034  # read by the script
    OPERANDS=()
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == "-h" || "$1" == "--help" ]]; then
            usage
            exit 0
        elif ((want_mode)) && [[ "$1" == "--docker" ]]; then
            MODE="docker"
        elif ((want_mode)) && [[ "$1" == "--local" ]]; then
            MODE="local"
        elif ((want_port)) && [[ "$1" == "--port" ]]; then
            need_value "$@"
            # shellcheck disable=SC2034  # read by the script
            port="$2"
            shift
        elif is_one_of "$1" "${valued[@]}"; then
            need_value "$@"
            script_option "$1" "$2"
            shift
        elif is_one_of "$1" "${flags[@]}"; then
            script_option "$1"
        elif ((want_operands)) && [[ "$1" != -* ]]; then
            OPERANDS+=("$1")
        elif [[ "$1" == -* ]]; then
            usage_error "unknown option '$1'"
        else
            usage_error "unexpected argument '$1'"
        fi
        shift
    done
}

# need_value OPTION ARGS...: fail unless OPTION is followed by a value.
need_value() {
    if [[ $# -lt 2 ]]; then
        echo "$(basename "$0"): error: $1 needs a value" >&2
        exit "${MISSING_VALUE_STATUS}"
    fi
}

# is_one_of WORD LIST...: whether WORD is in LIST.
is_one_of() {
    local word="$1" item
    shift
    for item in "$@"; do
        [[ "${item}" == "${word}" ]] && return 0
    done
    return 1
}

# MODE: "docker", "local" or "auto" (Docker when a daemon answers, otherwise local).
init_mode() {
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
}

# Help text shared by train-local.sh and serve-local.sh. The --docker/--local lines of an Options
# list; $1: the width of its option column.
usage_mode_options() {
    printf '  %-*s%s\n' "$1" --docker "run the image (built from the repository if missing)" \
        "$1" --local "run the local environment's textclf"
}

# The Environment paragraph; $1: the variables that follow TEXTCLF, for that script.
usage_environment() {
    printf 'Environment: USE_DOCKER=1|0, IMAGE (default %s), TEST_DIR, TEXTCLF,\n  %s\n' \
        "${DEFAULT_IMAGE}" "$1"
}

docker_available() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Decide the mode (set by parse_args mode) once; prints what it chose so a log shows which path ran.
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

# docker run runs the container as the invoking user, so that what it writes into TEST_DIR stays
# that user's and it reads what that user can read. Invoked as root, it starts as root, as SageMaker
# starts it: the image then hands model/, output/ and checkpoints/ to its own user, textclf (uid
# 1000), and drops to it. Either way the jobs never run as root (see the README, "Who the container
# runs as").
# shellcheck disable=SC2034  # used by the scripts that source this file
DOCKER_USER_ARGS=(--user "$(id -u):$(id -g)")

# Network arguments for docker run: DOCKER_NETWORK (e.g. host, none) when set, else Docker's default.
# shellcheck disable=SC2034  # used by the scripts that source this file
NETWORK_ARGS=()
if [[ -n "${DOCKER_NETWORK:-}" ]]; then
    # shellcheck disable=SC2034
    NETWORK_ARGS=("--network=${DOCKER_NETWORK}")
fi
