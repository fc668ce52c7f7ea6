#!/usr/bin/env bash
# The Windows smoke tier: tests/windows/wine_smoke.ts run by Deno for Windows
# (deno.exe from npm's @deno/win32-x64) under Wine 10, from a Debian 13
# (trixie) chroot made by mmdebstrap from this host's Debian mirror (Debian
# 12's Wine 8 cannot run Deno 2). The chroot, its Wine prefix and deno.exe
# are cached under ${XDG_CACHE_HOME:-$HOME/.cache}/lockbox-ci, so a second
# run starts in seconds. Needs root (mmdebstrap --mode=root, chroot, bind
# mounts). Usage: tests/windows/run.sh [deno test arguments...], or
# tests/windows/run.sh --prepare to build the chroot, the prefix and deno.exe
# and stop (CI does that in the background while the main suite runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
version=2.9.6
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lockbox-ci"
root="$cache/wine-trixie"
exe="$cache/deno-win-$version/deno.exe"
mkdir -p "$cache"

if [ ! -x "$root/usr/lib/wine/wine64" ]; then
  command -v mmdebstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap
  }
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  # Built beside the cache and moved in whole, so a broken build is never
  # taken for a cached one.
  rm -rf "$root.new"
  mmdebstrap --quiet --mode=root --variant=minbase \
    --include=wine,wine64,ca-certificates trixie "$root.new" "$mirror"
  mv "$root.new" "$root"
fi

if [ ! -f "$exe" ]; then
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "@deno/win32-x64@$version" >/dev/null && tar -xzf ./*.tgz)
  mkdir -p "$(dirname "$exe")"
  mv "$work/package/deno.exe" "$exe"
  rm -rf "$work"
fi

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount -l "${mounts[i]}" 2>/dev/null || true
  done
  # Each Deno process under Wine leaves a 93 MiB node.exe.tmp-<pid>.
  rm -f "$root"/wineprefix/drive_c/users/*/AppData/Local/deno/node_compat_bin/node.exe.tmp-* 2>/dev/null || true
}
trap cleanup EXIT
bind() {
  mkdir -p "$root$2"
  mount --bind "$1" "$root$2"
  mounts+=("$root$2")
}
bind /proc /proc
bind /dev /dev
bind /dev/pts /dev/pts
bind /dev/shm /dev/shm
bind "$repo" /repo

if [ ! -f "$root/wineprefix/system.reg" ]; then
  chroot "$root" env HOME=/root WINEPREFIX=/wineprefix WINEDEBUG=-all /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1
  chroot "$root" env WINEPREFIX=/wineprefix /usr/lib/wine/wineserver -w
fi
# No z: (the Linux root: code reading /proc would work there by accident);
# d: is the repository, C:\deno holds deno.exe.
rm -f "$root/wineprefix/dosdevices/z:"
ln -sfn /repo "$root/wineprefix/dosdevices/d:"
mkdir -p "$root/wineprefix/drive_c/deno"
cp -u "$exe" "$root/wineprefix/drive_c/deno/deno.exe"
# deno.exe fetches the npm packages the CLI imports (once, into the
# prefix's cache) and trusts the CAs this host trusts.
ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
[ -f "$ca" ] && cp "$ca" "$root/wineprefix/drive_c/deno/ca.pem"

# "run.sh -- ARGS" runs deno.exe with ARGS instead (to look around).
if [ "${1:-}" = "--prepare" ]; then
  exit 0
fi
if [ "${1:-}" = "--" ]; then
  shift
else
  set -- test --allow-all --no-check 'D:\tests\windows\wine_smoke.ts' "$@"
fi
status=0
chroot "$root" env -i --chdir=/repo PATH=/usr/bin:/bin HOME=/root WINEPREFIX=/wineprefix WINEDEBUG=-all \
  XDG_RUNTIME_DIR=/tmp DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 'DENO_CERT=C:\deno\ca.pem' \
  /usr/lib/wine/wine64 'C:\deno\deno.exe' "$@" || status=$?
chroot "$root" env WINEPREFIX=/wineprefix /usr/lib/wine/wineserver -k 2>/dev/null || true
exit "$status"
