# syntax=docker/dockerfile:1
# cifar serve in a container: `docker build -t cifar .`, `docker run -p 8000:8000 cifar`.
ARG NODE_VERSION=20

# ---- build: all dependencies (tsc is a devDependency) to compile src/ into dist/ ----
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` (tsc) would run before the sources are here; we build below.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies, the compiled CLI and the bundled model ----
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` needs tsc, which is not installed here (dist comes from the build
# stage). The dependencies' own install scripts are not needed on Linux: sharp ships prebuilt
# binaries as packages, webgpu's postinstall only touches macOS.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY configs ./configs
COPY models ./models
# The dashboard `cifar dashboard` draws by default.
COPY monitoring/grafana/dashboards/cifar-api.json ./monitoring/grafana/dashboards/cifar-api.json

# The official image's unprivileged user (uid 1000); nothing under /app is writable by it.
USER node
EXPOSE 8000

# /health answers as soon as the port is open (even while the model loads), so this is
# liveness; readiness (/ready) is for load balancers. Node's fetch: no curl in the slim image.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8000/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node is PID 1 and handles SIGTERM itself (drains in-flight requests for up to 10 s).
ENTRYPOINT ["node", "bin/cifar"]
# --host 0.0.0.0: the container's port must be reachable from outside it. --backend wasm: no
# GPU in a container by default, and wasm is the fastest CPU backend tfjs has here.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--backend", "wasm"]
