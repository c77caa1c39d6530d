#!/usr/bin/env bash
# Fails when clang-format would change any tracked C file.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
[ -z "$files" ] && exit 0
clang-format --dry-run --Werror $files
