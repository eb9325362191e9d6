# The LeadPulse worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY leadpulse leadpulse
COPY deploy deploy
RUN pip install --no-cache-dir .
# 0.0.0.0 inside the container, so that a published port reaches it; the query API
# (/contacts, personal data) stays off until tokens are given (LEADPULSE_API_TOKENS_FILE).
ENV LEADPULSE_WEB_HOST=0.0.0.0 \
    LEADPULSE_QUERY_API=off \
    LEADPULSE_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["leadpulse"]
CMD ["worker"]
