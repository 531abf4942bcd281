# Meridian, one container per availability zone. The image runs the JavaScript build of the TypeScript sources, so
# neither the control plane nor any data-plane worker thread loads Node's type stripper (about 12 MiB per thread).
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist ./dist
COPY geo-data ./geo-data
# The config is mounted here (a Swarm config or a bind mount); MERIDIAN_REGION/MERIDIAN_ZONE pick the AZ.
VOLUME ["/etc/meridian"]
USER node
# 8080: the proxy. 8081: the probe listener (/readyz, /healthz only) when the config has a `probe` section; publish
# it for GeoDNS checkers. 9090: admin API (metrics, status, reload); bind it to 0.0.0.0 in the config to scrape it.
EXPOSE 8080 8081 9090
STOPSIGNAL SIGTERM
# The image has no curl; Node's fetch checks liveness on the admin port from inside the container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# A fixed 32 MiB young-generation semi-space for the main thread (worker threads get the same from
# src/control/supervisor.ts): scavenges stay rare under load without V8 sizing it from the host's memory.
ENTRYPOINT ["node", "--max-semi-space-size=32", "dist/cli/index.js"]
CMD ["start", "--config", "/etc/meridian/meridian.yaml"]
