# textclf: one SageMaker bring-your-own image for BERT-family text classification.
#
#   docker build -t textclf .                        # full image (default): train + serve, CPU torch
#   docker build --target serve -t textclf:serve .   # slim image: serve only, no torch
#   docker run -v "$PWD/local_test/test_dir:/opt/ml" textclf train
#   docker run -p 8080:8080 -v "$PWD/local_test/test_dir/model:/opt/ml/model" textclf serve
#
# Build arguments:
#   BASE_IMAGE        any Debian-like image with apt and Python >= 3.11 in its archive
#                     (pin it by digest for reproducible builds). A GPU image uses a CUDA runtime
#                     base here and a CUDA index below; the NVIDIA driver comes from the host.
#   NGINX_PACKAGE     Debian's nginx-light; distributions without it (Ubuntu 24.04) use nginx.
#   TORCH_INDEX_URL   extra pip index for torch. The default, PyTorch's CPU index, gives a CPU
#                     build (PyPI's own torch wheel is a multi-GB CUDA build); a GPU image uses
#                     e.g. https://download.pytorch.org/whl/cu128. Empty: PyPI and wheels/ only.
#   wheels/           optional folder in the build context: wheels found there are preferred
#                     (offline or air-gapped builds, a local torch wheel in CI).
#
# Stages: system -> serve-deps -> serve, and serve-deps -> full-deps -> full. serve builds on
# serve-deps directly (nothing there to leave behind: pip keeps no cache). full copies the finished
# virtual environment out of full-deps, so that neither wheels/ nor the torch wheel reaches the
# image; that copy is the slowest step of a cold build, the price of 190 MB less image.
# The legacy builder builds every stage above its target: serve comes before full-deps so that
# `--target serve` never installs torch. Layers go system packages, requirements, code, so a
# code change rebuilds only the last layers.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS system
ARG NGINX_PACKAGE=nginx-light
ARG DEBIAN_FRONTEND=noninteractive
# Not pinned to exact versions: Debian stable only takes security and bug fixes, and the
# archive drops superseded versions, so exact pins would break every rebuild after an update.
# Reproducibility comes from pinning BASE_IMAGE (by digest) and the Python requirements.
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
# setuptools: the build backend of the textclf package itself, installed without build isolation
# so that a code-only rebuild needs no network.
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir -r /tmp/build/requirements-serve.txt setuptools==80.9.0

FROM serve-deps AS serve
# nginx.conf: the template serve renders; src/textclf/serve/templates/nginx.conf links to it.
COPY pyproject.toml README.md nginx.conf /opt/program/
COPY src/ /opt/program/src/
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/program \
    && rm -rf /opt/program/build
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/textclf"]
# The slim image cannot train (no torch), so its default is serve.
CMD ["serve"]

FROM serve-deps AS full-deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# wheel[s] matches the optional wheels/ folder: with it, its wheels join /tmp/build; without it,
# only requirements.txt is copied and the build still works.
COPY requirements.txt wheel[s] /tmp/build/
# torch alone first, with the torch index; then everything else from PyPI, so the extra index
# is never consulted for the other pinned packages. The version comes from requirements.txt,
# which hadolint cannot see through the variable.
# hadolint ignore=DL3013
RUN torch_requirement="$(grep -E '^torch==' /tmp/build/requirements.txt)" \
    && pip install --no-cache-dir --find-links /tmp/build \
        ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} "${torch_requirement}" \
    && pip install --no-cache-dir --find-links /tmp/build -r /tmp/build/requirements.txt \
    && python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

FROM system AS full
COPY --from=full-deps /opt/venv /opt/venv
# nginx.conf: the template serve renders; src/textclf/serve/templates/nginx.conf links to it.
COPY pyproject.toml README.md nginx.conf /opt/program/
COPY src/ /opt/program/src/
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/program \
    && rm -rf /opt/program/build
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/textclf"]
# SageMaker passes `train` or `serve`; SDK v3 local mode passes nothing, which means train.
CMD ["train"]
