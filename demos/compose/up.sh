#!/bin/sh
# Starts the Physarum demo network as containers (see README.md):
#
#   1. make build (static binaries in bin/) for the binaries the images
#      need, then stages each image's build context (its Dockerfile and
#      binaries only) in demos/compose/stage/<image>/;
#   2. creates, when missing, the network passphrase (./psk, mode 0600) and
#      the registry's identity (./registry.key, by genkey), and writes
#      ./.env with the registry's peer ID for docker-compose.yml;
#   3. builds the images physarum-compose-{registry,allocator,proxy,register}
#      FROM scratch, starts the network, waits for the services to be
#      registered and for http://127.0.0.1:8080/hello/ to answer.
#
# Run it again to rebuild and restart what changed; the PSK and the
# registry's key are kept (delete them, or run ./down.sh --purge, for new
# ones). The images stay after ./down.sh, so the next up.sh reuses their
# layers; ./down.sh --images removes them.
#
# Environment: PHYSARUM_PROXY_PORT (default 8080), the host port of the
# client proxy on 127.0.0.1.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
project=physarum-compose
port=${PHYSARUM_PROXY_PORT:-8080}

say() { printf '[compose] %s\n' "$*"; }
die() { printf 'up.sh: %s\n' "$*" >&2; exit 1; }

# compose runs docker compose (v2) when present, else docker-compose (v1).
if docker compose version >/dev/null 2>&1; then
	dc="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
	dc=docker-compose
else
	die "neither 'docker compose' nor 'docker-compose' is installed"
fi
compose() { $dc -p "$project" "$@"; }
docker info >/dev/null 2>&1 || die "no Docker daemon answers (docker info failed)"

# Only the binaries the images need: the Makefile's recipe and flags
# (static, trimmed), without depending on the rest of the tree building.
mod=github.com/physarum-p2p/physarum
pkgs="registry-service allocator proxy registry-cli demos/compose/register demos/compose/genkey
	demos/hello demos/calculator demos/sensor demos/aggregator demos/analytics"
say "building the binaries (make build, for what the images need)"
make -C "$root" --no-print-directory build BINARIES="$(for p in $pkgs; do printf '%s/%s ' $mod "$p"; done)"

say "staging each image's build context in $here/stage"
rm -rf "$here/stage"
demos="hello calculator sensor aggregator analytics"
stage() { # stage IMAGE BINARY... : the image's Dockerfile and binaries
	dir="$here/stage/$1"
	mkdir -p "$dir"
	cp "$here/$1.Dockerfile" "$dir/Dockerfile"
	shift
	for b in "$@"; do
		[ -x "$root/bin/$b" ] || die "bin/$b is missing after make build"
		# A hard link when bin/ is on the same file system: no copy.
		ln "$root/bin/$b" "$dir/$b" 2>/dev/null || cp "$root/bin/$b" "$dir/$b"
	done
}
stage registry registry-service
stage proxy proxy
# shellcheck disable=SC2086 # $demos is a word list
stage allocator proxy allocator $demos
# shellcheck disable=SC2086
stage register registry-cli register $demos
# The services' process configs, with Exec.Command at the binaries' paths
# in the allocator image (/bin/<service>); see demos/services/README.md.
mkdir -p "$here/stage/register/services"
for name in $demos; do
	sed 's|${DEMO_BIN}|/bin|g' "$root/demos/services/$name.exec.json" >"$here/stage/register/services/$name.json"
done

cd "$here"
if [ ! -s psk ]; then
	say "creating the network passphrase in $here/psk (keep it secret; never commit it)"
	(umask 077 && head -c 32 /dev/urandom | base64 >psk)
fi
peer=$("$root/bin/genkey" "$here/registry.key") || die "could not create the registry's key"
cat >.env <<EOF
# Written by up.sh.
COMPOSE_PROJECT_NAME=$project
REGISTRY_PEER_ID=$peer
PHYSARUM_PROXY_PORT=$port
EOF
say "registry peer ID $peer"

# Another process on the proxy's port would make 'up' fail half-way.
if [ -z "$(compose ps -q proxy 2>/dev/null)" ] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
	die "something already answers on 127.0.0.1:$port; stop it or set PHYSARUM_PROXY_PORT"
fi

say "building the images (FROM scratch)"
compose build
say "starting the network"
compose up -d --remove-orphans
# Builds that a rebuild replaced are left untagged: remove ours, now that
# no container uses them.
docker image prune -f --filter label=physarum.compose.image >/dev/null

say "registering the demo services"
reg=$(compose ps -q register)
[ -n "$reg" ] || die "no register container"
code=$(docker wait "$reg")
if [ "$code" != 0 ]; then
	compose logs register >&2
	die "registering the services failed (exit $code); logs above; './down.sh' stops the network"
fi

say "waiting for http://127.0.0.1:$port/hello/ (the first request starts an instance)"
deadline=$(($(date +%s) + 120))
until out=$(curl -fsS --max-time 30 "http://127.0.0.1:$port/hello/" 2>&1); do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		compose ps >&2
		die "hello did not answer within 120s: $out (logs: cd $here && $dc logs; './down.sh' stops the network)"
	fi
	sleep 2
done
say "hello answered: $out"

cat <<EOF

The network is up (project $project). Try:
  curl http://127.0.0.1:$port/hello/
  curl 'http://127.0.0.1:$port/calculator/mul?a=6&b=7'
  curl http://127.0.0.1:$port/sensor/reading
  curl 'http://127.0.0.1:$port/sensor/reading?value=100'     (a spike: analytics says anomaly)
  cd $here && $dc -p $project run --rm --entrypoint /bin/registry-cli register -ephemeral -psk-file=/run/secrets/psk instances
  (the same with 'nodes' or 'list')
  cd $here && $dc -p $project logs -f site-a
Metrics (Prometheus text; demos/prometheus.yml scrapes them):
  registry      http://127.0.0.1:9102/metrics
  site-a        http://127.0.0.1:9103/metrics
  site-b        http://127.0.0.1:9104/metrics
  site-c        http://127.0.0.1:9105/metrics
  client proxy  http://127.0.0.1:9106/metrics
Stop it with $here/down.sh
EOF
