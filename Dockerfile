# The cluster image of eeg2bold: the package, the Ray version the launch renderers write into
# their jobs, and a torch build chosen at build time. A non-root user runs everything.
#
#   docker build -t registry.example.org/eeg2bold:0.1 .                         # CPU torch
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#       -t registry.example.org/eeg2bold:0.1-cu128 .                            # CUDA 12.8
#
# Then `eeg2bold launch k8s STUDY --image registry.example.org/eeg2bold:0.1 ...` (add
# `--image-pull-secret NAME` for a private registry). RAY_VERSION must equal the Ray of the
# machine that renders the job (`eeg2bold launch` writes it as the RayJob's rayVersion).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG RAY_VERSION=2.60.0
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RAY_USAGE_STATS_ENABLED=0

# KubeRay's pods run as uid 1000 by convention; the home holds Ray's token and temp files.
RUN useradd --create-home --uid 1000 --shell /bin/bash eeg2bold

WORKDIR /opt/eeg2bold
COPY pyproject.toml README.md ./
COPY eeg2bold ./eeg2bold
# torch first, from the chosen index (a bare torch from PyPI would pick its own CUDA build)
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && pip install "ray[tune]==${RAY_VERSION}" . \
    && python -c "import eeg2bold, ray, torch; print('eeg2bold', eeg2bold.__version__, 'ray', ray.__version__, 'torch', torch.__version__)"

USER 1000
WORKDIR /home/eeg2bold
ENTRYPOINT []
CMD ["eeg2bold", "--help"]
