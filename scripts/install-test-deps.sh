#!/usr/bin/env bash
# The Debian packages the tests use (as root, or through sudo when run by another user): mosquitto as the real cloud broker
# and its command-line clients, openssl for test certificates, qemu-user-static and the arm64 C
# libraries to run the linux-arm64 executable, systemd for systemd-analyze on the unit.
# Installs only what is missing; stops the system mosquitto the package starts on port 1883 (the
# tests start their own on ephemeral ports).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Root runs it as it is (a container, CI); anyone else through sudo, asked for here and only when
# something is missing.
if [ "$(id -u)" -ne 0 ]; then
  as_root() { sudo "$@"; }
else
  as_root() { "$@"; }
fi
if ! command -v mosquitto >/dev/null || ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_passwd >/dev/null \
  || ! command -v openssl >/dev/null || ! command -v qemu-aarch64-static >/dev/null \
  || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || [ ! -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] \
  || ! command -v systemd-analyze >/dev/null || ! command -v dpkg-deb >/dev/null; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients openssl \
    qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross systemd dpkg >/dev/null
fi
(as_root systemctl stop mosquitto 2>/dev/null || as_root service mosquitto stop 2>/dev/null || true) >/dev/null 2>&1
