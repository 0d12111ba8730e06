#!/bin/sh
# System packages the Qt (napari) tests need: Xvfb and the libraries of Qt's xcb platform
# plugin. Installs them with apt-get when it can (root, or sudo without a password); else
# says what is missing and exits 0: the Qt tests then skip with that reason (never abort).
# Run by the README's test command and by .ci/run.
PKGS="xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-randr0 libxcb-xkb1 libxcb-xfixes0 libdbus-1-3 \
libfontconfig1 libglib2.0-0 dicom3tools"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
else
  command -v Xvfb >/dev/null 2>&1 || missing="xvfb (and the Qt xcb libraries)"
fi
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_test_env: not a Debian/Ubuntu system; install Xvfb and Qt's xcb libraries yourself" \
       "(missing:$missing); the Qt tests will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "setup_test_env: cannot install (not root, no password-less sudo):$missing" >&2
  echo "setup_test_env: as root: apt-get install -y$missing   (the Qt tests are skipped until then)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup_test_env: installing$missing" >&2
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >/dev/null; }; then
  echo "setup_test_env: apt-get failed; the Qt tests will be skipped" >&2
fi
exit 0
