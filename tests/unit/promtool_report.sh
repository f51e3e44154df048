#!/bin/sh
# promtool_report.sh DUMP_REPORT: lint re_report_prometheus() output with
# `promtool check metrics` for every sample snapshot; any complaint fails.
# Exit 77 (skip) when promtool is not installed (Debian: apt-get install prometheus).
set -u

dump=$1
if ! command -v promtool >/dev/null 2>&1; then
	echo "SKIPPED: promtool-report: promtool not found (Debian package 'prometheus' provides it)"
	exit 77
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
status=0
for sample in empty one three zero-min escape impaired; do
	if ! "$dump" "$sample" >"$tmp/metrics"; then
		echo "FAIL $sample: dump_report failed"
		status=1
		continue
	fi
	promtool check metrics <"$tmp/metrics" >"$tmp/log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ] || [ -s "$tmp/log" ]; then
		echo "FAIL $sample: promtool exit $rc"
		cat "$tmp/log"
		status=1
	else
		echo "ok   $sample ($(grep -vc '^#' "$tmp/metrics") samples)"
	fi
done
exit "$status"
