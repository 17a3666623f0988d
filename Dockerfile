# The sprocket-ops runtime image. Build it with `bash scripts/build-image.sh`, which compiles the
# release binary on the host and prepares this build context; nothing is compiled or downloaded
# here (the machines that build it cannot pull images, so there is no `FROM rust:…` stage):
#
#   system/  what a glibc binary needs in an empty filesystem: the dynamic loader and the
#            libraries `ldd` lists (libc, libm, libgcc_s, …) plus glibc's NSS modules, at the
#            paths the loader searches; /etc/nsswitch.conf (`hosts: files dns`, so /etc/hosts,
#            --add-host and Docker's embedded DNS all resolve); /etc/passwd and /etc/group with
#            the `sprocket-ops` user (uid/gid 10001, home /data); the CA bundle
#            /etc/ssl/certs/ca-certificates.crt; /tmp (mode 1777, for SQLite temp files)
#   app/     the stripped release binary and the empty /data directory (the SQLite file lives
#            there: mount a volume on it)
#
#   tools/   executables for /usr/local/bin: empty, or the `pulumi` that
#            `scripts/build-image.sh --pulumi FILE` puts there (with its libraries in system/)
#
# Layer deploys run the `pulumi` CLI (and Node.js for the TypeScript programs), which a scratch
# image does not have (deploy/README.md, "A deploy-capable image"). Where a registry is
# reachable, build on an image that carries both and leave out the system files (that base has
# its own glibc, which must be at least as new as the build host's, and its own /etc):
#
#   bash scripts/build-image.sh --build-arg RUNTIME_BASE=pulumi/pulumi-nodejs:3.x \
#                               --build-arg SYSTEM_FILES=none
#
# `pulumi` must then be on the base image's PATH (this file sets no PATH, so the base's is
# kept; on scratch Docker's default PATH includes /usr/local/bin), or `[pulumi] binary` in
# sprocket-ops.toml must name it. Pulumi keeps its plugins under $HOME/.pulumi: HOME is /data,
# the volume.
ARG RUNTIME_BASE=scratch
ARG SYSTEM_FILES=system

# The run-time files of the binary, for a scratch base.
FROM scratch AS system
COPY system/ /

# Nothing, for a base image that has its own libc and /etc.
FROM scratch AS none
COPY empty/ /

FROM ${SYSTEM_FILES} AS system-files

FROM ${RUNTIME_BASE}
ARG VERSION=0.0.0
ARG REVISION=unknown
COPY --from=system-files / /
COPY --chown=10001:10001 app/data /data
COPY app/sprocket-ops /sprocket-ops
COPY tools/ /usr/local/bin/
ENV HOME=/data
LABEL org.opencontainers.image.title="sprocket-ops" \
      org.opencontainers.image.description="Discord chat-ops bot for the Sprocket platform on Docker Swarm" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
# /healthz and /metrics (`[http] listen`; 127.0.0.1:9464 by default, inside the container).
EXPOSE 9464
USER 10001:10001
# No shell and no curl in the image: the binary probes itself (plain HTTP GET, 3 s budget,
# exit 0 on 200 and 1 otherwise). /healthz is liveness: 200 unless the process is stuck, also
# while Discord is away or a deploy runs (the gateway state is in its body; /readyz has it as
# a status).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/sprocket-ops", "probe", "--url", "http://127.0.0.1:9464/healthz"]
ENTRYPOINT ["/sprocket-ops"]
CMD ["serve", "--config", "/etc/sprocket-ops/sprocket-ops.toml"]
