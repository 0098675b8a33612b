#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the dev stack need, when missing.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

pkgs=(build-essential cmake pkg-config git curl ca-certificates
      librdkafka-dev libcurl4-openssl-dev libjansson-dev libyajl-dev libmicrohttpd-dev libssl-dev
      kcat python3 jq "$@")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
