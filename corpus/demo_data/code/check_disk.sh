#!/bin/sh
# check_disk.sh - warn when any mounted filesystem is fuller than a threshold.
# POSIX sh, suitable for cron. Exit status is 1 if any filesystem is over.
#
# Usage: check_disk.sh [THRESHOLD_PERCENT]   (default 90)

threshold=${1:-90}

case $threshold in
	''|*[!0-9]*)
		echo "threshold must be a number between 1 and 100" >&2
		exit 2
		;;
esac

status=0
# -P gives one line per filesystem in a stable format.
df -P | awk 'NR > 1 { print $5, $6 }' | while read -r used mount; do
	pct=${used%\%}
	case $pct in
		''|*[!0-9]*) continue ;;
	esac
	if [ "$pct" -ge "$threshold" ]; then
		echo "WARNING: $mount is ${pct}% full (threshold ${threshold}%)"
		echo over
	fi
done > /tmp/check_disk.$$

if grep -q '^over$' /tmp/check_disk.$$; then
	grep -v '^over$' /tmp/check_disk.$$
	status=1
else
	echo "all filesystems below ${threshold}%"
fi
rm -f /tmp/check_disk.$$
exit $status
