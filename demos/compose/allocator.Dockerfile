# An allocator of the Compose demo network (context: stage/allocator), run
# with -runtime process: it starts each instance as child processes inside
# this container, the proxy (/bin/proxy) with the service's Exec.Command
# (/bin/<service>) as its child.
FROM scratch
# up.sh and down.sh find this project's images, old builds too, by this label.
LABEL physarum.compose.image=allocator
COPY proxy /bin/
COPY hello calculator sensor aggregator analytics /bin/
COPY allocator /bin/
ENTRYPOINT ["/bin/allocator"]
