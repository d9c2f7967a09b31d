#!/usr/bin/env bash
# System packages aqedge needs: the Arm cross compiler, newlib, QEMU and the Fashion-MNIST files.
# Idempotent: returns at once when everything is there. Installs with apt-get when run as root;
# otherwise prints exactly what to install and stops.
set -euo pipefail
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist gcc make python3-venv)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "aqedge setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "aqedge setup: missing system packages. Install them, then run make again:" >&2
  echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
