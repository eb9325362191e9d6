# The LeadPulse worker image used by docker-compose.yml, with the compiled scoring core
# (leadpulse/core.py; figures in bench/README.md): built in the first stage, which has a C
# compiler, or one line says that the pure Python core will run, and why.
# `--build-arg LEADPULSE_CORE=pure` builds the image without it.
FROM python:3.11 AS build
ARG LEADPULSE_CORE=auto
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY leadpulse leadpulse
RUN pip install --no-cache-dir "setuptools>=68" wheel mypy==2.4.1 \
 && pip wheel --no-cache-dir --no-build-isolation --no-deps -w /wheels . \
 && LEADPULSE_CORE=$LEADPULSE_CORE python -m leadpulse.core build \
 && mkdir -p .leadpulse/compiled

FROM python:3.11-slim
WORKDIR /app
COPY deploy deploy
COPY --from=build /wheels /wheels
COPY --from=build /src/.leadpulse/compiled /compiled
# The build goes beside the installed package, under the digest of its sources (leadpulse/core.py).
RUN pip install --no-cache-dir /wheels/*.whl \
 && python -m leadpulse.core adopt /compiled \
 && rm -rf /wheels /compiled
# 0.0.0.0 inside the container, so that a published port reaches it; the query API
# (/contacts, personal data) stays off until tokens are given (LEADPULSE_API_TOKENS_FILE).
ENV LEADPULSE_WEB_HOST=0.0.0.0 \
    LEADPULSE_QUERY_API=off \
    LEADPULSE_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["leadpulse"]
CMD ["worker"]
