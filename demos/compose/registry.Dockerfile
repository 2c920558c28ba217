# The registry (embedded etcd) and bootstrap peer of the Compose demo
# network. up.sh stages this file as stage/registry/Dockerfile beside the
# static binary; nothing else is in the build context.
FROM scratch
# up.sh and down.sh find this project's images, old builds too, by this label.
LABEL physarum.compose.image=registry
COPY registry-service /bin/
ENTRYPOINT ["/bin/registry-service"]
