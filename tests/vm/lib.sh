# Shared by the VM harness scripts (sourced, not run).
# Cache root: $LIFEBOAT_VM_CACHE, else $XDG_CACHE_HOME/lifeboat-vm, else
# /var/cache/lifeboat-vm. Each build lives under a key that hashes the
# scripts that made it, so editing a script rebuilds and a warm run reuses.
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${LIFEBOAT_VM_CACHE:-}" ]; then CACHE=$LIFEBOAT_VM_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then CACHE=$XDG_CACHE_HOME/lifeboat-vm
else CACHE=/var/cache/lifeboat-vm; fi
BUILD_KEY=$(cat "$VM_DIR/build.sh" "$VM_DIR/init.sh" | sha256sum | cut -c1-16)
BUILD=$CACHE/build-$BUILD_KEY
log() { printf 'vm: %s\n' "$*" >&2; }
