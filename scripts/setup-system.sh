#!/usr/bin/env bash
# System packages aqedge needs: the Arm cross compiler, newlib, QEMU and the Fashion-MNIST files.
# Idempotent: returns at once when everything is there. Installs with apt-get when run as root;
# otherwise prints exactly what to install and stops.
set -euo pipefail
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist gcc make python3-venv)
# Flashing tools for real boards (a few MB): installed when we can, never required (the tests
# that run them against "no probe connected" skip without them).
OPTIONAL=(openocd stlink-tools)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  optional=()
  for p in "${OPTIONAL[@]}"; do installed "$p" || optional+=("$p"); done
  if [ ${#optional[@]} -gt 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "aqedge setup: installing the flashing tools ${optional[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${optional[@]}" \
      >/dev/null 2>&1 || echo "aqedge setup: could not install ${optional[*]} (optional, skipped)"
  fi
  exit 0
fi
for p in "${OPTIONAL[@]}"; do installed "$p" || missing+=("$p"); done
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "aqedge setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "aqedge setup: missing system packages. Install them, then run make again:" >&2
  echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
