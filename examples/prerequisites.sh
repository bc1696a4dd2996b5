#!/bin/sh
# Checks the system packages MemoBuild's builds and tests use, and installs the missing ones with
# apt-get when run as root; otherwise says exactly what is missing. Usage: prerequisites.sh [--tests]
set -eu
need="runc:runc busybox:busybox-static"
if [ "${1:-}" = "--tests" ]; then
    need="$need skopeo:skopeo umoci:umoci make:make docker-registry:docker-registry htpasswd:apache2-utils nginx:nginx-light"
fi
missing=""
for pair in $need; do
    program=${pair%%:*}
    package=${pair#*:}
    if [ "$program" = busybox ]; then
        [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 && continue
    elif command -v "$program" >/dev/null 2>&1; then
        continue
    fi
    missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "prerequisites.sh: missing packages:$missing (install them with: apt-get install$missing)" >&2
    exit 2
fi
echo "prerequisites.sh: installing$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
