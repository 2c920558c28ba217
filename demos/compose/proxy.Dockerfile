# The client proxy of the Compose demo network (context: stage/proxy). Its
# one layer is also the allocator image's first (same instruction on the
# same parent, same file), so the two share it.
FROM scratch
# up.sh and down.sh find this project's images, old builds too, by this label.
LABEL physarum.compose.image=proxy
COPY proxy /bin/
ENTRYPOINT ["/bin/proxy"]
