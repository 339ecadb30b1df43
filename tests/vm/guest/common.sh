# Sourced by guest scripts (runs under dash inside the guest).
# LB runs the binary under test against a repository in guest RAM.
export LIFEBOAT_REPOSITORY=${LIFEBOAT_REPOSITORY:-/tmp/repo}
export LIFEBOAT_PASSWORD_FILE=/tmp/password
printf 'vm-test-password' >/tmp/password
LB=/host/lifeboat
say() { echo "GUEST: $*"; }
fail() { echo "GUEST-FAIL: $*"; exit 1; }
# json_field FIELD: the first value of "FIELD": in the JSON on stdin (numbers and strings).
json_field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2- | tr -d '"'; }
