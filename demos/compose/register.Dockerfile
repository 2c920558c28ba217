# The one-shot "register" container (context: stage/register): the
# register helper, which runs "registry-cli add" for each demo service,
# registry-cli, and the services' process configs, whose Exec.Command is
# the binary's path in the allocator image (/bin/<service>). The demo
# binaries are here too only so that registry-cli records their SHA-256 as
# each service's ContentHash, as make demo does; their layer is the
# allocator image's second, rebuilt here on another parent.
FROM scratch
# up.sh and down.sh find this project's images, old builds too, by this label.
LABEL physarum.compose.image=register
COPY hello calculator sensor aggregator analytics /bin/
COPY registry-cli register /bin/
COPY services/ /services/
ENTRYPOINT ["/bin/register"]
