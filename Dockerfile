# The LeadPulse worker image used by docker-compose.yml. `--build-arg LEADPULSE_COMPILE=1`
# builds the opt-in mypyc-compiled core (setup.py; figures and caveats in bench/README.md).
FROM python:3.11 AS build
ARG LEADPULSE_COMPILE=0
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY leadpulse leadpulse
RUN pip install --no-cache-dir "setuptools>=68" wheel mypy==2.4.1 \
 && LEADPULSE_COMPILE=$LEADPULSE_COMPILE pip wheel --no-cache-dir --no-build-isolation --no-deps -w /wheels .

FROM python:3.11-slim
WORKDIR /app
COPY deploy deploy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# 0.0.0.0 inside the container, so that a published port reaches it; the query API
# (/contacts, personal data) stays off until tokens are given (LEADPULSE_API_TOKENS_FILE).
ENV LEADPULSE_WEB_HOST=0.0.0.0 \
    LEADPULSE_QUERY_API=off \
    LEADPULSE_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["leadpulse"]
CMD ["worker"]
