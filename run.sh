#!/usr/bin/env bash
# NexusCore's two-command start.
#
#   ./run.sh demo    install what is missing, build, start a local mesh on loopback and show it
#   ./run.sh test    install what is missing, build, run the whole test suite
#                    (release build, all tests; then the ASan+UBSan build, C tests)
#   ./run.sh build   install what is missing and build only
#
# Packages are installed with apt-get when missing (needs root); the step is idempotent.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(build-essential scons pkg-config python3 clang libclang-rt-14-dev
  libsodium-dev libzmq3-dev librocksdb-dev libprotobuf-c-dev protobuf-c-compiler libev-dev
  libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev libseccomp-dev libcmocka-dev
  iproute2 procps)

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "run.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "run.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

jobs=$(nproc 2>/dev/null || echo 2)
cmd=${1:-help}
case "$cmd" in
  build)
    install_missing
    scons -Q -j"$jobs"
    ;;
  test)
    install_missing
    scons -Q -j"$jobs"
    scons -Q -j"$jobs" VARIANT=asan
    log=$(mktemp)
    rc=0
    echo "== release build: every test"
    scons -Q test 2>&1 | tee "$log" || rc=1
    echo "== asan build (ASan+UBSan): C unit and simulator tests"
    NX_SIM_QUICK=1 ASAN_OPTIONS=detect_leaks=1 scons -Q VARIANT=asan test-unit 2>&1 | tee -a "$log" || rc=1
    # One closing line for both runs.
    awk '/^[0-9]+ passed, [0-9]+ failed/ {p += $1; f += $3; s += ($5 == "" ? 0 : $5)}
         END {printf "total: %d passed, %d failed", p, f; if (s) printf ", %d skipped", s; print ""}' "$log"
    rm -f "$log"
    exit $rc
    ;;
  demo)
    install_missing
    scons -Q -j"$jobs" build/release/nexus
    exec scripts/demo.sh build/release/nexus "${2:-}"
    ;;
  help | -h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *)
    echo "run.sh: unknown command '$cmd' (use demo, test or build)" >&2
    exit 2
    ;;
esac
