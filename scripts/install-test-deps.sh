#!/usr/bin/env bash
# Installs what the test suites need beyond the Rust, Swift and Kotlin toolchains, from Debian's
# packages: nginx (the real-server tests), curl and aria2 (the benchmark peers). Idempotent.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  # The Debian package would start nginx on port 80; policy-rc.d keeps it from starting anything.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi
echo "test dependencies: $( (nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1) | tr -d '\n'), $(curl --version | head -n1 | cut -d' ' -f1-2), $(aria2c --version | head -n1)"
