# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the full dependency set.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY simulators ./simulators
RUN npm run build

# Runtime stage: production dependencies, compiled code and migrations only, as a non-root user.
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    DATA_DIR=/var/lib/intercom-cloud \
    HTTP_PORT=8080 \
    MQTT_PORT=1883 \
    MQTT_WS_PORT=8083
WORKDIR /app
# Calls: the service starts Debian's Kamailio as a child when SIP_SERVER is unset (src/calls/kamailio.ts).
RUN apt-get update \
    && apt-get install -y --no-install-recommends kamailio kamailio-websocket-modules kamailio-tls-modules kamailio-utils-modules \
    && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY src/calls/kamailio.cfg src/calls/kamailio-calls.cfg ./dist/src/calls/
COPY migrations ./migrations
RUN mkdir -p /var/lib/intercom-cloud && chown node:node /var/lib/intercom-cloud
USER node
# 8080 HTTP (roles all, api), 1883 MQTT, 8883 MQTTS, 8083 MQTT over WebSocket and health (role gateway);
# SIP (role all with its Kamailio child): 5060 UDP and TCP, 5061 TLS, 5066 WebSocket, 7443 secure WebSocket.
# Not exposed: the SIP back end (SIP_BACKEND_PORT), for an external Kamailio only (role api; loopback otherwise).
EXPOSE 8080 1883 8883 8083 5060/udp 5060/tcp 5061 5066 7443
VOLUME ["/var/lib/intercom-cloud"]
# ROLE picks the process's part (all, gateway, engine, api): a gateway answers /healthz on its WebSocket
# port, an engine listens on no port (its liveness is the process itself).
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "const r=process.env.ROLE||'all';if(r==='engine')process.exit(0);const p=r==='gateway'?(process.env.MQTT_WS_PORT||8083):(process.env.HTTP_PORT||8080);fetch('http://127.0.0.1:'+p+'/healthz').then(x=>process.exit(x.ok?0:1),()=>process.exit(1))"
# Exec form so SIGTERM reaches node for the graceful shutdown.
CMD ["node", "dist/src/main.js"]
