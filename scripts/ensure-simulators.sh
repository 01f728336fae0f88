#!/usr/bin/env bash
# Make sure Icarus Verilog and Verilator are installed: apt-get when we are root
# (or have password-less sudo), otherwise say exactly what to install. ccache is
# optional (Verilator builds share their runtime's objects through it) and is
# installed with them when apt-get can be used.
set -euo pipefail
missing=()
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
command -v verilator >/dev/null 2>&1 || missing+=(verilator)
optional=()
command -v ccache >/dev/null 2>&1 || optional+=(ccache)
if [ ${#missing[@]} -eq 0 ]; then
  [ ${#optional[@]} -eq 0 ] && exit 0
  # Only the optional tool is missing: install it where we may, never fail for it.
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "Installing ${optional[*]} with apt-get (faster Verilator builds)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${optional[@]}"; } >/dev/null 2>&1 || echo "ccache not installed; continuing" >&2
  fi
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "intformer needs ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing ${missing[*]} with apt-get"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${optional[@]}" \
    >/dev/null 2>&1 || echo "ccache not installed; continuing" >&2
  exit 0
fi
echo "intformer needs ${missing[*]}; install them with your package manager" \
     "(Icarus Verilog 11+, Verilator 5+)" >&2
exit 1
