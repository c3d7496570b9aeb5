# One image for every component; the command picks the role (see docker-compose.yml).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY broker ./broker
COPY services ./services
COPY shared ./shared
COPY simulators ./simulators
COPY cli ./cli
COPY tsconfig.json ./
# `up` (the default command) keeps its embedded database and demo credentials in ./data (its log goes
# to standard output, unless it runs on a terminal: `docker run -it`).
RUN mkdir -p /app/data && chown node:node /app/data
VOLUME ["/app/data"]
USER node
EXPOSE 1883 8080
ENTRYPOINT ["node", "cli/metershare.mjs"]
CMD ["up"]
