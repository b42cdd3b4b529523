#!/usr/bin/env bash
# A STAND-IN for the Dockerfile's pinned base image, for machines that cannot pull it.
#
#   scripts/make_standin_base.sh IMAGE_REF [ENGINE]
#
# Where Docker Hub is unreachable (as on the machine this project is tested on), this
# builds a Debian root file system with debootstrap (the Debian release the pinned tag
# is built on), with Debian's python3, venv and pip, `python`/`pip` on PATH as in the
# official image, and imports it under IMAGE_REF so that `FROM IMAGE_REF` resolves
# locally. It is NOT the official python image: its Python is Debian's (3.11.2 on
# bookworm, not the tag's own build), so it proves the Dockerfile and the service, not
# the official base. The machine's CA bundle and pip config are copied in, so a pip
# behind this machine's proxy or mirror still works in the build.
#
# Needs root, debootstrap and a reachable Debian mirror ($DEBIAN_MIRROR).
set -euo pipefail

ref=${1:?usage: make_standin_base.sh IMAGE_REF [ENGINE]}
engine=${2:-podman}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || {
    echo "make_standin_base: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
}

root=$(mktemp -d /var/tmp/imagetagger-standin.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "make_standin_base: debootstrap $suite into $root (stand-in for $ref)" >&2
nice -n 19 debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    "$suite" "$root" "$mirror" >&2

# What the official image gives a Dockerfile: `python` and `pip` on PATH, pip allowed
# to install into the system interpreter (PEP 668's marker removed).
ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED

# This machine's trust store and pip settings (a TLS-intercepting proxy, a mirror).
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
if [ -f /etc/pip.conf ]; then
    cp /etc/pip.conf "$root/etc/pip.conf"
fi

# Slim, as the official -slim images are: no apt lists, no docs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/*

tar -C "$root" -c . | "$engine" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "stand-in for $ref: debootstrap $suite + Debian python3 (not the official image)" \
    - "$ref" >&2
echo "make_standin_base: imported $ref" >&2
