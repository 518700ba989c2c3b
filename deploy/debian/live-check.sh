#!/bin/sh
# Manual check of the .deb and the hardened unit under a LIVE systemd (not part of npm test: it needs
# root, systemd-container and a few hundred MB of RAM). Boots this machine's own Debian with
# systemd-nspawn on a throw-away overlay of / (private network: nothing inside reaches the host's
# ports), installs out/edgewarden_<version>_amd64.deb, starts the service with the demo key and the
# example snapshot on port 1884, checks an allowed and a denied command with the mosquitto clients,
# stops, purges, and shuts the container down.
#
#   sudo apt-get install systemd-container mosquitto-clients && npm run package:deb -- --arch=x64
#   sudo sh deploy/debian/live-check.sh
set -eu

cd "$(dirname "$0")/../.."
VERSION=$(node -p 'require("./package.json").version')
DEB="$PWD/out/edgewarden_${VERSION}_amd64.deb"
[ -f "$DEB" ] || { echo "no $DEB: run npm run package:deb first" >&2; exit 1; }
B=$(mktemp -d /tmp/ew-live.XXXXXX)
mkdir -p "$B/upper" "$B/work" "$B/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$B/upper,workdir=$B/work" "$B/merged"
NSPAWN=
cleanup() {
	[ -n "$NSPAWN" ] && kill "$NSPAWN" 2>/dev/null && while kill -0 "$NSPAWN" 2>/dev/null; do sleep 1; done
	umount "$B/merged" 2>/dev/null || true
	rm -rf "$B"
}
trap cleanup EXIT INT TERM
cp "$DEB" "$B/merged/root/edgewarden.deb"
systemd-nspawn -D "$B/merged" -b --private-network -M ew-live --register=no --keep-unit >"$B/console.log" 2>&1 &
NSPAWN=$!
C=
for _ in $(seq 1 60); do
	C=$(pgrep -P "$NSPAWN" | head -1 || true)
	if [ -n "$C" ]; then
		state=$(nsenter -t "$C" -a systemctl is-system-running --wait 2>/dev/null || true)
		case "$state" in running|degraded) break ;; esac
	fi
	sleep 1
done
[ -n "$C" ] || { echo "the container did not boot" >&2; cat "$B/console.log" >&2; exit 1; }

nsenter -t "$C" -a sh -eu -c '
	dpkg -i /root/edgewarden.deb
	id edgewarden; stat -c "%U %a %n" /var/lib/edgewarden; systemctl is-enabled edgewarden
	cp /usr/lib/edgewarden/config/demo-keys/demo.pub.pem /etc/edgewarden/keys/
	sed -i -e "s/port: 1883/port: 1884/" -e "s#bootstrap: null#bootstrap: /usr/lib/edgewarden/config/example-snapshot.cose#" /etc/edgewarden/config.yaml
	systemctl start edgewarden
	systemctl show -p Type,ActiveState,SubState,StatusText,User edgewarden
	timeout 6 mosquitto_sub -h 127.0.0.1 -p 1884 -i oven-1 -u oven-1 -P oven-1-token -t "things/oven-1/commands/#" -v >/tmp/device.out &
	sleep 1.5
	mosquitto_pub -h 127.0.0.1 -p 1884 -u viewer-carl -P carl-pass -t things/oven-1/commands/reboot -m from-carl -q 1
	mosquitto_pub -h 127.0.0.1 -p 1884 -u tech-anna -P anna-pass -t things/oven-1/commands/reboot -m from-anna -q 1
	sleep 1
	[ "$(cat /tmp/device.out)" = "things/oven-1/commands/reboot from-anna" ] || { echo "FAIL: the device got: $(cat /tmp/device.out)"; exit 1; }
	echo "ok: the device got tech-anna'"'"'s command only"
	edgewarden audit tail -n 2 --state-dir /var/lib/edgewarden
	systemctl reload edgewarden
	sleep 1
	journalctl -u edgewarden --no-pager | grep -q "SIGHUP: reloading the configuration" || { echo "FAIL: reload did not reach the agent"; exit 1; }
	[ "$(systemctl is-active edgewarden)" = active ] || { echo "FAIL: not active after reload"; exit 1; }
	echo "ok: systemctl reload re-read the configuration"
	systemd-analyze security edgewarden --no-pager | tail -1
	systemctl stop edgewarden
	systemctl show -p Result edgewarden
	dpkg -P edgewarden
	if id edgewarden 2>/dev/null || [ -e /var/lib/edgewarden ] || [ -e /etc/edgewarden ]; then echo "FAIL: purge left something"; exit 1; fi
	echo "ok: purged clean"
'
echo "live check passed"
