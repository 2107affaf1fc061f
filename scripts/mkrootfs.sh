#!/bin/bash
# mkrootfs.sh DIR — build a minimal busybox root filesystem for silo tests and demos.
#
# Uses Debian's busybox-static (/bin/busybox): copies the static binary, makes one
# relative symlink per applet, writes passwd/group/hostname, creates the empty mount
# points, and installs the in-container checker as /usr/bin/silo-check.
# Safe to run again on an existing DIR (idempotent).
set -euo pipefail

BUSYBOX=${BUSYBOX:-/bin/busybox}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1

if [ ! -x "$BUSYBOX" ]; then
    echo "mkrootfs: $BUSYBOX not found or not executable; install Debian's busybox-static (apt-get install -y busybox-static)" >&2
    exit 1
fi
if ! file_out=$("$BUSYBOX" --list 2>/dev/null) || [ -z "$file_out" ]; then
    echo "mkrootfs: $BUSYBOX --list failed; is it a full busybox build?" >&2
    exit 1
fi

mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc root proc sys dev tmp var/tmp run
chmod 1777 tmp var/tmp
chmod 0700 root

# Copy the binary only if it changed (keeps re-runs cheap and idempotent).
if ! cmp -s "$BUSYBOX" bin/busybox 2>/dev/null; then
    rm -f bin/busybox
    cp "$BUSYBOX" bin/busybox
    chmod 0755 bin/busybox
fi

# One relative symlink per applet, all pointing at /bin/busybox. Applets go in /bin
# unless a same-named path already exists there (e.g. busybox itself).
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] && continue
    ln -sfn busybox "bin/$applet"
done
# Common absolute locations some tools expect.
for applet in env; do
    ln -sfn ../../bin/busybox "usr/bin/$applet"
done

cat > etc/passwd <<'PW'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
silo:x:1000:1000:silo test user:/tmp:/bin/sh
PW
cat > etc/group <<'GR'
root:x:0:
nogroup:x:65534:
silo:x:1000:
GR
echo silo > etc/hostname
: > etc/resolv.conf
: > etc/hosts

install -m 0755 "$here/silo-check" usr/bin/silo-check
echo "mkrootfs: rootfs ready at $(pwd)"
