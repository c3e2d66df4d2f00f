# Multi-stage image for the Tally engine service.
# Build stage: compiles TypeScript and builds librdkafka from source (CKJS_LINKING=dynamic
# links it against the image's OpenSSL, zlib, zstd and SASL libraries).
FROM node:20-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV CKJS_LINKING=dynamic
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY engine engine
COPY ringbuffer ringbuffer
COPY persist persist
COPY io io
COPY bench bench
COPY perf perf
RUN npm run build && npm prune --omit=dev

# Runtime stage: only the compiled code, production dependencies and shared libraries.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 zlib1g libzstd1 liblz4-1 libsasl2-2 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app tally
WORKDIR /app
COPY --from=build --chown=tally:tally /app/node_modules node_modules
COPY --from=build --chown=tally:tally /app/dist dist
COPY --from=build --chown=tally:tally /app/package.json package.json
COPY --chown=tally:tally persist/migrations persist/migrations
USER tally
ENV NODE_ENV=production TALLY_HTTP_HOST=0.0.0.0 TALLY_HTTP_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${TALLY_HTTP_PORT}/healthz" || exit 1
ENTRYPOINT ["node", "dist/io/cli.js"]
CMD ["start"]
