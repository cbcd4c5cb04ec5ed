# feedsvc: feeds, subscribe pages and mail delivery for a folder of posts.
#   docker build -t feedsvc .
#   docker run -p 8080:8080 -v "$PWD/posts:/site/posts:ro" -v feedsvc-data:/site/subscribers feedsvc
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY feedsvc ./feedsvc
COPY templates ./templates
COPY examples ./examples
RUN pip install . && rm -rf /src

# Runs as an unprivileged user; /site holds the config, posts (mounted read-only), feeds and data.
RUN useradd --create-home --uid 10001 feedsvc \
    && mkdir -p /site/posts /site/public /site/subscribers \
    && chown -R feedsvc:feedsvc /site
USER feedsvc
WORKDIR /site
VOLUME ["/site/subscribers", "/site/public"]

# Paths resolve against the current folder when they come from the environment; a feedsvc.toml mounted
# into /site (or FEEDSVC_CONFIG) is used when present, otherwise these variables are the configuration.
ENV FEEDSVC_POSTS__DIR=/site/posts \
    FEEDSVC_FEEDS__OUTPUT_DIR=/site/public \
    FEEDSVC_STORE__DIR=/site/subscribers \
    FEEDSVC_WEB__PORT=8080

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"

STOPSIGNAL SIGTERM
CMD ["feedsvc", "run", "--host", "0.0.0.0"]
