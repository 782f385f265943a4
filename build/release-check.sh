#!/usr/bin/env bash
# release-check VERSION: a release tag vX.Y.Z must match the chart's
# appVersion and version, and have its section in CHANGELOG.md, before
# anything is built or pushed.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="$1"
[[ "$tag" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "release-check: $tag is not vMAJOR.MINOR.PATCH" >&2; exit 1; }
chart=deploy/helm/orgscaler/Chart.yaml
app="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart")"
ver="$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart")"
fail=0
[[ "$app" == "$tag" ]] || { echo "release-check: $chart has appVersion $app, the tag is $tag: bump it" >&2; fail=1; }
[[ "$ver" == "${tag#v}" ]] || { echo "release-check: $chart has version $ver, the tag is $tag: bump it to ${tag#v}" >&2; fail=1; }
grep -q "^## \[${tag#v}\] - [0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}$" CHANGELOG.md ||
  { echo "release-check: CHANGELOG.md has no section '## [${tag#v}] - YYYY-MM-DD': move Unreleased there" >&2; fail=1; }
exit "$fail"
