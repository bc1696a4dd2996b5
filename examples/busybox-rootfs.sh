#!/bin/sh
# Builds a minimal busybox root filesystem in DIR from Debian's busybox-static, so that builds
# have a base image without any registry: `mb-oci import DIR --tag busybox`.
set -eu
dir=${1:?usage: busybox-rootfs.sh DIR}
busybox=${BUSYBOX:-/bin/busybox}
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    echo "busybox-rootfs.sh: $busybox is missing or not statically linked: apt-get install busybox-static" >&2
    exit 2
fi
rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/etc" "$dir/root" "$dir/home/app" "$dir/proc" "$dir/dev" "$dir/sys" "$dir/tmp" "$dir/var"
chmod 1777 "$dir/tmp"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$dir/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' > "$dir/etc/group"
chown 1000:1000 "$dir/home/app"
# Fixed times make the base image reproducible from one machine to the next.
find "$dir" -exec touch -h -d @0 {} +
