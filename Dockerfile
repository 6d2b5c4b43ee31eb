# The runtime image for docker-compose: the package with its examples.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine engine
COPY streams streams
COPY schemas schemas
COPY examples examples
RUN pip install --no-cache-dir .
ENV KWF_STATE_DIR=/data/state
EXPOSE 3500
CMD ["kwf", "run", "--app", "examples.app:runtime", "--http-host", "0.0.0.0"]
