#!/usr/bin/env bash
# backup_rotate.sh - create a dated tar.gz backup of a directory and keep
# only the newest N archives.
#
# Usage: backup_rotate.sh SOURCE_DIR DEST_DIR [KEEP]
set -euo pipefail

usage() {
	echo "usage: $(basename "$0") SOURCE_DIR DEST_DIR [KEEP]" >&2
	exit 2
}

[[ $# -ge 2 && $# -le 3 ]] || usage

src=${1%/}
dest=${2%/}
keep=${3:-7}

if [[ ! -d "$src" ]]; then
	echo "error: source '$src' is not a directory" >&2
	exit 1
fi
if ! [[ "$keep" =~ ^[0-9]+$ ]] || (( keep < 1 )); then
	echo "error: KEEP must be a positive integer" >&2
	exit 1
fi

mkdir -p "$dest"
name=$(basename "$src")
stamp=$(date +%Y%m%d-%H%M%S)
archive="$dest/${name}-${stamp}.tar.gz"

echo "creating $archive"
tar -czf "$archive" -C "$(dirname "$src")" "$name"

# List archives newest first and delete everything after the first $keep.
mapfile -t archives < <(ls -1t "$dest"/"${name}"-*.tar.gz 2>/dev/null || true)
if (( ${#archives[@]} > keep )); then
	for old in "${archives[@]:keep}"; do
		echo "removing old backup $old"
		rm -f -- "$old"
	done
fi

size=$(du -h "$archive" | cut -f1)
echo "done: $archive ($size), keeping ${keep} most recent"
