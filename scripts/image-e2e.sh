#!/usr/bin/env bash
# The image stage: build a real image of tests/bundles/context_app without a Docker daemon and run it.
#
#   needs: root; apt-get install buildah podman debootstrap runc; the dev extra installed
#   cache: the debootstrap tarball in $KINGPOST_CI_CACHE (default /var/cache/kingpost-ci), the base
#          image and build layers in podman's store (/var/lib/containers); keep both between runs.
#   time:  about 1 minute with the base cached, plus debootstrap (2-6 minutes) once a week.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
exec "$PY" -m pytest -m image -rP -p no:cacheprovider tests/test_image.py "$@"
