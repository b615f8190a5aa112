#!/usr/bin/env bash
# Builds the Debian package with Debian's own dpkg-deb: target/deb/fnlb_<version>_<arch>.deb, holding the release
# binary (everything it needs is embedded), the systemd unit and the default config (a conffile).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
cargo build --release --locked
root=target/deb/fnlb_${version}_${arch}
rm -rf "$root"
install -D -m 0755 target/release/fnlb "$root/usr/bin/fnlb"
install -D -m 0644 packaging/fnlb.service "$root/lib/systemd/system/fnlb.service"
install -D -m 0644 packaging/fnlb.toml "$root/etc/fnlb/fnlb.toml"
install -D -m 0644 README.md "$root/usr/share/doc/fnlb/README.md"
install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: fnlb
Version: $version
Architecture: $arch
Maintainer: fnlb maintainers <fnlb@localhost>
Depends: libc6
Recommends: python3, bubblewrap, nodejs
Section: net
Priority: optional
Description: load balancer with serverless functions behind it
 fnlb serves Tencent CLB-style listeners and rules in front of SCF-style event
 functions and server targets, with the TencentCloud API 3.0, a web console,
 Prometheus metrics and access logs, in one binary.
CONTROL
echo "/etc/fnlb/fnlb.toml" > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    systemctl enable fnlb.service >/dev/null || true
    systemctl restart fnlb.service || true
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl stop fnlb.service >/dev/null || true
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
dpkg-deb --root-owner-group --build "$root" >/dev/null
echo "$root.deb"
