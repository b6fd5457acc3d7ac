# The mesg node image: static binaries built on the host (testnet/build.sh node), no base
# image, no shell. The healthcheck (exec form, in docker-compose.yml) is `mesg-node health`.
FROM scratch
COPY mesg-node /mesg-node
COPY mesg /mesg
ENV MESG_DATA_DIR=/data
EXPOSE 4001/tcp 4001/udp 50052/tcp 50053/tcp
ENTRYPOINT ["/mesg-node"]
