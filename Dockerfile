# textclf: one SageMaker bring-your-own image for BERT-family text classification.
#
#   docker build -t textclf .                        # full image (default): train + serve, CPU torch
#   docker build --build-arg TORCH_VARIANT=cuda -t textclf:gpu .   # full, CUDA torch: trains on GPU
#   docker build --target serve -t textclf:serve .   # slim image: serve only, no torch
#   docker run -v "$PWD/local_test/test_dir:/opt/ml" textclf train
#   docker run -p 8080:8080 -v "$PWD/local_test/test_dir/model:/opt/ml/model" textclf serve
#
# Build arguments:
#   BASE_IMAGE        any Debian-like image with apt and Python >= 3.11 in its archive
#                     (pin it by digest for reproducible builds). No CUDA base is needed: the
#                     CUDA libraries come with torch's wheels, the NVIDIA driver from the host.
#   NGINX_PACKAGE     Debian's nginx-light; distributions without it (Ubuntu 24.04) use nginx.
#   TORCH_VARIANT     cpu (default) or cuda: which build of the pinned torch the full image gets,
#                     and so which lock: requirements.txt (torch==2.13.0+cpu) or requirements-gpu.txt
#                     (PyPI's torch==2.13.0, a CUDA build, with its nvidia-* wheels). Both serve on
#                     the CPU (onnxruntime) and train on the CPU where there is no GPU; cuda trains on
#                     the GPUs and is several GB larger. The build fails when the torch it installed
#                     is not the variant asked for.
#   TORCH_INDEX_URL   cpu: extra pip index for torch. The default, PyTorch's CPU index, has the CPU
#                     build (PyPI's own torch wheel is a multi-GB CUDA build). Empty: PyPI and
#                     wheels/ only (then wheels/ must hold the CPU torch wheel).
#   wheels/           optional folder in the build context: wheels found there are preferred
#                     (offline or air-gapped builds, a local torch wheel in CI).
#
# Every Python package comes from a lock (scripts/lock.py, `make lock`): pinned, with its sha256,
# installed with --require-hashes, so pip installs nothing else and nothing altered; a wheel in
# wheels/ or on an index is used only when its hash is the lock's. The versions are those the tests
# run (the locks are resolved against requirements-dev.txt, the test venv's). Each image records
# what it holds, `pip list --format=freeze`, in /opt/program/pip-freeze.txt:
#   docker run --rm --entrypoint cat IMAGE /opt/program/pip-freeze.txt
#
# Stages: system -> serve-deps -> serve, and serve-deps -> full-deps -> full, where full starts from
# runtime-cpu or runtime-cuda (system plus, for cuda, the NVIDIA container runtime's settings).
# serve builds on serve-deps directly (nothing there to leave behind: pip keeps no cache). full
# copies the finished virtual environment out of full-deps, so that neither wheels/ nor the torch
# wheel reaches the image; that copy is the slowest step of a cold build, the price of 190 MB less
# image. The legacy builder builds every stage above its target: serve comes before full-deps so
# that `--target serve` never installs torch. Layers go system packages, requirements, code, so a
# code change rebuilds only the last layers.

ARG BASE_IMAGE=debian:bookworm-slim
ARG TORCH_VARIANT=cpu

FROM ${BASE_IMAGE} AS system
ARG NGINX_PACKAGE=nginx-light
ARG DEBIAN_FRONTEND=noninteractive
# Not pinned to exact versions: Debian stable only takes security and bug fixes, and the
# archive drops superseded versions, so exact pins would break every rebuild after an update.
# Reproducibility comes from pinning BASE_IMAGE (by digest) and the Python locks.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        python3 \
        python3-venv \
        "${NGINX_PACKAGE}" \
    && rm -rf /var/lib/apt/lists/* \
    && nginx -v \
    && python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version'
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=TRUE \
    PYTHONDONTWRITEBYTECODE=TRUE \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# serve honours SAGEMAKER_BIND_TO_PORT (inference pipelines, multi-container endpoints).
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
# Code lives outside /opt/ml: SageMaker mounts over that tree at run time.
WORKDIR /opt/program

FROM system AS serve-deps
COPY requirements-serve.txt /tmp/build/
# The serve lock, setuptools included: the build backend of the textclf package itself, installed
# without build isolation so that a code-only rebuild needs no network.
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --require-hashes -r /tmp/build/requirements-serve.txt

FROM serve-deps AS serve
# nginx.conf: the template serve renders; src/textclf/serve/templates/nginx.conf links to it.
COPY pyproject.toml README.md nginx.conf /opt/program/
COPY src/ /opt/program/src/
# What the image holds, for comparison with the lock: the lock's packages, textclf, and the venv's pip.
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/program \
    && rm -rf /opt/program/build \
    && pip check \
    && pip list --format=freeze > /opt/program/pip-freeze.txt
# The jobs run as textclf (uid/gid 1000), never as root. The image starts as root (no USER) only
# because SageMaker mounts the folders a training job writes owned by root, where a non-root image
# user cannot write; `textclf` hands those folders to textclf and drops to it (for good: no
# capabilities left) before it reads any input (src/textclf/contract/job_user.py). The /opt/ml
# folders made here serve a container that mounts none; no file keeps a setuid/setgid bit, so
# nothing in the image leads back to root. Started with --user, the container runs as that user.
RUN groupadd --gid 1000 textclf \
    && useradd --uid 1000 --gid textclf --home-dir /home/textclf --create-home --shell /usr/sbin/nologin textclf \
    && mkdir -p /opt/ml/model /opt/ml/output/data /opt/ml/checkpoints \
    && chown -R textclf:textclf /opt/ml/model /opt/ml/output /opt/ml/checkpoints \
    && find / -xdev -perm /6000 -type f -exec chmod a-s {} +
ENV TEXTCLF_USER=textclf \
    HOME=/home/textclf
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/textclf"]
# The slim image cannot train (no torch), so its default is serve.
CMD ["serve"]

FROM serve-deps AS full-deps
ARG TORCH_VARIANT
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# wheel[s] matches the optional wheels/ folder: with it, its wheels join /tmp/build; without it,
# only the locks are copied and the build still works.
COPY requirements.txt requirements-gpu.txt wheel[s] /tmp/build/
# The variant's lock. torch alone first (its entry of the lock, hashes and all, without its
# dependencies), with the variant's source; then the whole lock from PyPI (and wheels/), so the
# extra index is never consulted for the other packages; then the check that torch is the variant
# asked for (CUDA torch cannot be imported before its nvidia-* wheels are there). The cuda lock's
# torch hashes are PyPI's files: another CUDA build (a PyTorch cuXYZ index) needs a lock of its own.
RUN case "${TORCH_VARIANT}" in \
        cpu) lock=/tmp/build/requirements.txt torch_index="${TORCH_INDEX_URL}" ;; \
        cuda) lock=/tmp/build/requirements-gpu.txt torch_index= ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, got '${TORCH_VARIANT}'" >&2 && exit 2 ;; \
    esac \
    && awk '/^torch==/ {keep = 1; print; next} keep && /^ +--hash=/ {print; next} {keep = 0}' \
        "${lock}" > /tmp/build/torch.txt \
    && pip install --no-cache-dir --require-hashes --no-deps --find-links /tmp/build \
        ${torch_index:+--extra-index-url "${torch_index}"} -r /tmp/build/torch.txt \
    && pip install --no-cache-dir --require-hashes --find-links /tmp/build -r "${lock}" \
    && python -c 'import sys, torch; built = torch.version.cuda; \
print("torch", torch.__version__, "cuda", built); \
ok = (built is not None) == (sys.argv[1] == "cuda"); \
sys.exit(None if ok else f"TORCH_VARIANT={sys.argv[1]}, but torch {torch.__version__} has CUDA {built}")' \
        "${TORCH_VARIANT}"

# What the full image's variant adds to the system: for cuda, the settings the NVIDIA container
# runtime reads (what nvidia/cuda images set), so that the GPUs and their driver are mounted.
FROM system AS runtime-cpu
LABEL textclf.torch-variant=cpu

FROM system AS runtime-cuda
LABEL textclf.torch-variant=cuda
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# runtime-cpu or runtime-cuda, a stage of this file (hadolint takes it for an untagged image).
# hadolint ignore=DL3006
FROM runtime-${TORCH_VARIANT} AS full
COPY --from=full-deps /opt/venv /opt/venv
# nginx.conf: the template serve renders; src/textclf/serve/templates/nginx.conf links to it.
COPY pyproject.toml README.md nginx.conf /opt/program/
COPY src/ /opt/program/src/
# As in serve: what the image holds, in /opt/program/pip-freeze.txt.
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/program \
    && rm -rf /opt/program/build \
    && pip check \
    && pip list --format=freeze > /opt/program/pip-freeze.txt
# As in serve: the jobs run as textclf, never as root (see there).
RUN groupadd --gid 1000 textclf \
    && useradd --uid 1000 --gid textclf --home-dir /home/textclf --create-home --shell /usr/sbin/nologin textclf \
    && mkdir -p /opt/ml/model /opt/ml/output/data /opt/ml/checkpoints \
    && chown -R textclf:textclf /opt/ml/model /opt/ml/output /opt/ml/checkpoints \
    && find / -xdev -perm /6000 -type f -exec chmod a-s {} +
ENV TEXTCLF_USER=textclf \
    HOME=/home/textclf
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/textclf"]
# SageMaker passes `train` or `serve`; SDK v3 local mode passes nothing, which means train.
CMD ["train"]
