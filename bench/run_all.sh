#!/usr/bin/env bash
# `make bench`: every speed benchmark, one after another (never two at once: they share the cores),
# then the tables in bench/README.md (make readme-tables). Each script writes bench/results/<name>.json
# and .md with the exact command, the date, the machine and the load average at start and end.
#
# The sizes below are what fits in about an hour on 2 shared cores (request counts and time budgets
# are bounded; every result file says how many calls each figure rests on). BENCH_SCALE=2 doubles
# the time budgets and request counts; BENCH_ONLY picks steps: peak, engine (or engine-minilm,
# engine-distilbert, engine-bert-base), server, profile.
#
# Heavy steps take an exclusive flock on /tmp/textclf-heavy.lock so that two benchmark runs in one
# checkout do not measure each other.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-.venv/bin/python}"
SCALE="${BENCH_SCALE:-1}"
ONLY=" ${BENCH_ONLY:-peak engine server profile} "
ONLY="${ONLY/ engine / engine-minilm engine-distilbert engine-bert-base }"
LOCK=/tmp/textclf-heavy.lock
PEER_VENV="${TEXTCLF_PEER_VENV:-${PWD}/bench/.work/.venv-peer}"
export TEXTCLF_PEER_VENV="${PEER_VENV}"

s() { awk -v x="$1" -v k="${SCALE}" 'BEGIN { v = x * k; printf (v == int(v) ? "%d" : "%.1f"), v }'; }
heavy() {
    echo "+ $*" >&2
    flock "${LOCK}" "$@"
}
want() { [[ " ${ONLY} " == *" $1 "* ]]; }

# The real pretrained encoder (sha256-verified, PyPI wheel only) and the benchmark models are
# prepared on first use by bench/benchlib.py under bench/.work (gitignored).

if want peak; then
    heavy "${PY}" bench/peak.py --threads 1,2 --max-seconds "$(s 3)"
    # the same ceiling at the model's own shapes: the best INT8 / PyTorch FP32 ratio this CPU allows
    heavy "${PY}" bench/int8_ceiling.py --seconds "$(s 15)"
fi

# Real MiniLM-L6, then DistilBERT- and BERT-base-shaped random models; 1 and 2 threads; SST-2 dev, IMDB
# test subset (cut at 256 tokens) with dynamic padding, and SST-2 padded to 128; batch 1 and batched.
# Bigger models get fewer distinct calls and BERT-base a batch of 4: one BERT-base IMDB batch of 8 takes
# seconds in PyTorch on this machine, and each cell runs every call in all three runtimes.
if want engine-minilm; then
    heavy "${PY}" bench/engine.py --models minilm --batches 1,8 --calls "$(s 16)" --seconds "$(s 3)" \
        --name engine-minilm
fi
if want engine-distilbert; then
    heavy "${PY}" bench/engine.py --models distilbert --batches 1,8 --calls "$(s 6)" --seconds "$(s 2)" \
        --name engine-distilbert
fi
if want engine-bert-base; then
    heavy "${PY}" bench/engine.py --models bert-base --batches 1,4 --calls "$(s 4)" --seconds "$(s 2)" \
        --name engine-bert-base
fi

if want server; then
    # The Hugging Face toolkit peer lives in its own venv; if it cannot be installed, server_load.py
    # records why in its results instead of failing the run.
    if [[ ! -x "${PEER_VENV}/bin/serve" ]]; then
        bash bench/peers/install-hf-peer.sh "${PEER_VENV}" || echo "run_all: the HF toolkit peer did not install" >&2
    fi
    heavy "${PY}" bench/server_load.py --servers textclf,bare,seed,hf,distilbert,distilbert-bare \
        --concurrency 1,4,16,64 --shapes single,batch8 --workers 2 \
        --max-requests "$(s 2000)" --seconds "$(s 12)" --name server
    # the floors of the stack, in one run with it: gunicorn + a bare WSGI predictor, and nginx -> gunicorn ->
    # a plain Flask route (serve's own supervisor, nginx.conf and gunicorn command line)
    heavy "${PY}" bench/server_load.py --servers textclf,bare,bare-wsgi,stack-floor --concurrency 1,4,16,64 \
        --shapes single --workers 2 --max-requests "$(s 2000)" --seconds "$(s 8)" --rounds 3 --name server-floor
fi

if want profile; then
    # Where the time goes (the aims that are missed are explained from this): per-stage timing of the
    # predictor, and py-spy samples of the gunicorn workers under load (py-spy in its own venv).
    if [[ ! -x bench/.work/.venv-tools/bin/py-spy ]]; then
        { python3 -m venv bench/.work/.venv-tools && bench/.work/.venv-tools/bin/pip install -q py-spy==0.4.3; } ||
            echo "run_all: py-spy did not install; hotspots.py records only the stage timings" >&2
    fi
    heavy "${PY}" bench/hotspots.py --servers textclf,distilbert,seed --concurrency 16 --seconds "$(s 10)" \
        --stage-requests "$(s 200)"
fi

# the generated blocks: bench/README.md from bench/results/*.json (and the top README's hyperparameter table)
"${PY}" scripts/readme_tables.py
