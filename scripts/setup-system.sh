#!/usr/bin/env bash
# System packages aqedge needs: the Arm cross compiler, newlib and the C++ headers for it (the
# TFLite Micro export; no C++ library is linked), QEMU, the Fashion-MNIST files,
# host compilers and cmake (host runner, generated CMake and TFLM projects), and the flashing tools
# of real boards (openocd, stlink-tools: a few MB; the tests run them against "no probe connected").
# Idempotent: returns at once when everything is there. Installs with apt-get when run as root;
# otherwise prints exactly what to install and stops.
set -euo pipefail
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-dev qemu-system-arm
          dataset-fashion-mnist gcc g++ make cmake python3-venv openocd stlink-tools)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
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
