# One image, three programs: `ballast store`, `ballast operator`, `ballast sidecar`.
# Build: docker build -t ballast:0.2.0 .   (no container engine here: `make image-check` runs
# these same steps in a clean directory and starts the result read-only.)
ARG NODE_VERSION=24

# --- build: install from the lockfile, compile, drop dev dependencies -------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json tsconfig.build.json ./
COPY api ./api
COPY cli ./cli
COPY lib ./lib
COPY store ./store
COPY operator ./operator
COPY sidecar ./sidecar
COPY cluster ./cluster
COPY scripts ./scripts
RUN ./node_modules/.bin/tsc -p tsconfig.build.json && mkdir -p dist/store/api dist/store/format dist/api && cp -r store/api/proto dist/store/api/ && cp store/format/*.proto dist/store/format/ && cp -r api/proto dist/api/
RUN npm prune --omit=dev --no-audit --no-fund --loglevel=error

# --- runtime: Node 24 slim, the compiled code and production dependencies, non-root ------------
FROM node:${NODE_VERSION}-bookworm-slim
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="ballast" \
      org.opencontainers.image.description="Replicated etcd-API stores on Kubernetes: store, operator and resilience sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ballast-dev/ballast"
# iptables for `ballast mesh-init`, the init container of pods with transparent interception
# (it writes the pod's nat table; the default nf_tables backend, as current kube-proxy uses).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin/ballast ./bin/ballast
# Nothing is written under /app at run time: the image works with a read-only root filesystem
# (data goes to the mounted volume, logs to stdout).
ENV NODE_ENV=production PATH=/app/bin:/usr/local/bin:/usr/bin:/bin
USER 65532:65532
ENTRYPOINT ["ballast"]
CMD ["--help"]
