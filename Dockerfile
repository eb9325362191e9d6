# The LeadPulse worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY leadpulse leadpulse
COPY deploy deploy
RUN pip install --no-cache-dir .
ENV LEADPULSE_WEB_HOST=0.0.0.0 \
    LEADPULSE_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["leadpulse"]
CMD ["worker"]
