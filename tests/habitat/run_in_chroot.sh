#!/usr/bin/env bash
# Run the habitat backend's tests against a real habitat-sim on a machine without conda.
#
# habitat-sim has no PyPI wheel for Linux. A chroot kit (the folder HABITAT_KIT names, holding
# habitat_chroot.sh) builds a Debian 13 chroot with Python 3.13, a community headless
# habitat-sim 0.2.2 wheel and Mesa's software EGL; this script uses it to run the tests
# that need habitat_sim (and the embedded renderer, for the cross-backend check) on this checkout.
# The project does not depend on the kit: with habitat-sim installed your own way (conda), just
# run `pytest -k "habitat or contract"`.
#
# Usage (as root, since the kit uses debootstrap, mount and chroot):
#   HABITAT_KIT=/path/to/kit tests/habitat/run_in_chroot.sh               # the default selection below
#   HABITAT_KIT=/path/to/kit tests/habitat/run_in_chroot.sh -k cross -s   # any pytest arguments instead
# Environment: HABITAT_KIT (the kit folder, required), HABITAT_CHROOT (default /tmp/trixie, the kit's default).
# Exit status: pytest's; 2 with a message when HABITAT_KIT is unset or names no kit.
set -euo pipefail

PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "${HABITAT_KIT:-}" ]; then
    echo "run_in_chroot.sh: set HABITAT_KIT to the habitat chroot kit's folder (the one holding habitat_chroot.sh)" >&2
    exit 2
fi
KIT=$HABITAT_KIT
if [ ! -x "$KIT/habitat_chroot.sh" ]; then
    echo "run_in_chroot.sh: HABITAT_KIT=$KIT holds no executable habitat_chroot.sh" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "run_in_chroot.sh: must run as root (the kit needs debootstrap, mount and chroot)" >&2
    exit 1
fi
if [ $# -eq 0 ]; then
    set -- -q tests/test_habitat_backend.py tests/test_habitat_cross_backend.py \
        tests/test_renderer_contract.py tests/test_scene_datasets.py
fi

# What the generation side needs inside the chroot (no torch, no prefect for these tests).
# libgl1: glcontext (the embedded renderer) opens libGL.so.1 next to libEGL.
PIP_PACKAGES="trimesh scipy pydantic pillow opencv-python-headless pyarrow moderngl pytest scikit-image"
APT_PACKAGES="libgl1"
STAMP_KEY=$(echo "$PIP_PACKAGES $APT_PACKAGES" | sha256sum | cut -c1-16)

t0=$SECONDS
# The project is bind-mounted read-write at /mnt/project; it is put on PYTHONPATH rather than
# pip-installed, and nothing is written into the checkout (no bytecode, no pytest cache).
export HABITAT_PROJECT=$PROJECT
"$KIT/habitat_chroot.sh" --run /bin/bash -ec "
    stamp=/var/lib/habitat-setup/crocopipe-test-deps
    if [ \"\$(cat \$stamp 2>/dev/null)\" != '$STAMP_KEY' ]; then
        apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
        /opt/hab/bin/pip install -q $PIP_PACKAGES
        echo '$STAMP_KEY' > \$stamp
    fi
    cd /mnt/project
    PYTHONPATH=/mnt/project PYTHONDONTWRITEBYTECODE=1 /opt/hab/bin/python -m pytest -p no:cacheprovider $(printf '%q ' "$@")
" && rc=0 || rc=$?
echo "run_in_chroot.sh: exit status $rc after $((SECONDS - t0)) s" >&2
exit $rc
