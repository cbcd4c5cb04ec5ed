# feedsvc: feeds, subscribe pages and mail delivery for a folder of posts.
#   docker build -t feedsvc .
#   docker run -p 127.0.0.1:8080:8080 -e FEEDSVC_SITE__URL=https://blog.example.org \
#     -v "$PWD/posts:/site/posts:ro" -v feedsvc-data:/site/subscribers feedsvc
# Two stages: the first builds feedsvc's wheel beside the wheels of the locked dependencies
# (requirements.lock, exact versions); the runtime installs only those wheels, with no compiler and no index.
ARG PYTHON_IMAGE=python:3.11.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies first: this layer is reused until requirements.lock changes, not on every code change.
COPY requirements.lock ./
RUN pip wheel --wheel-dir /wheels --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY feedsvc ./feedsvc
COPY templates ./templates
COPY examples ./examples
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Only feedsvc and what it needs, from the locked wheels (the test tools among them are not installed).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels /wheels/feedsvc-*.whl

# Runs as an unprivileged user; /site holds the config, posts (mounted read-only), feeds and data. Mount
# volumes on /site/subscribers (the store, the generated secret key, the outbox) and /site/public if wanted:
# the image declares none, so no anonymous volume is left behind per container.
RUN useradd --create-home --uid 10001 --user-group feedsvc \
    && mkdir -p /site/posts /site/public /site/subscribers \
    && chown -R 10001:10001 /site
USER 10001:10001
WORKDIR /site

# These variables make the configuration come from the environment: add FEEDSVC_SITE__URL (required) and any
# other FEEDSVC_<SECTION>__<KEY>. A feedsvc.toml mounted into /site (or named by FEEDSVC_CONFIG) is read first.
ENV FEEDSVC_POSTS__DIR=/site/posts \
    FEEDSVC_FEEDS__OUTPUT_DIR=/site/public \
    FEEDSVC_STORE__DIR=/site/subscribers \
    FEEDSVC_WEB__PORT=8080

EXPOSE 8080
# Healthy (or not) 5 s after start; failures while starting up (migrations, first build) count after 60 s.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]

STOPSIGNAL SIGTERM
CMD ["feedsvc", "run", "--host", "0.0.0.0"]
