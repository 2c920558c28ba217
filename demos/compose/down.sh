#!/bin/sh
# Stops the Physarum demo network started by up.sh and removes its
# containers and network (it creates no volumes; --volumes is there for
# safety). The images physarum-compose-* are kept for the next up.sh.
#
#   ./down.sh            stop and remove containers and the network
#   ./down.sh --images   also remove the images physarum-compose-* (and
#                        older builds of them)
#   ./down.sh --purge    also remove the images, the staged files, the PSK,
#                        the registry's key and .env (the next up.sh makes
#                        a new network identity)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
project=physarum-compose
images=no
purge=no
for a in "$@"; do
	case $a in
	--images) images=yes ;;
	--purge) images=yes purge=yes ;;
	*) printf 'usage: %s [--images | --purge]\n' "$0" >&2; exit 2 ;;
	esac
done

if docker compose version >/dev/null 2>&1; then
	dc="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
	dc=docker-compose
else
	printf 'down.sh: neither docker compose nor docker-compose is installed\n' >&2
	exit 1
fi

cd "$here"
# down needs the variables the file refers to, even after --purge removed
# .env or before up.sh ever wrote it.
[ -f .env ] || export REGISTRY_PEER_ID=unset
# docker-compose v1 checks that every build context exists, even to stop.
for image in registry allocator proxy register; do
	mkdir -p "stage/$image"
done
rmi=""
[ $images = yes ] && rmi="--rmi all"
# shellcheck disable=SC2086 # $dc and $rmi are word lists
$dc -p "$project" down --volumes --remove-orphans --timeout 30 $rmi
# docker-compose run leaves its containers when not given --rm.
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || docker rm -f $left >/dev/null

# Untagged older builds of these images, if any, go with them.
if [ $images = yes ]; then
	old=$(docker images -q --filter label=physarum.compose.image)
	# shellcheck disable=SC2086 # a list of image IDs
	[ -z "$old" ] || docker rmi -f $old >/dev/null
fi

rm -rf stage
if [ $purge = yes ]; then
	rm -f psk registry.key .env
fi
printf '[compose] stopped%s\n' "$([ $images = yes ] && printf '; images removed' || true)"
