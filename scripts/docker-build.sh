#!/usr/bin/env bash
# Builds the `mlops` image offline: static binaries from this workspace on an empty base.
#   scripts/docker-build.sh              release binaries (slow cold build, small and fast)
#   MLOPS_DOCKER_PROFILE=debug scripts/docker-build.sh
# MLOPS_DOCKER_SKIP_BUILD=1 reuses binaries already built; MLOPS_IMAGE_TAG sets the tag.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${MLOPS_DOCKER_PROFILE:-release}
tag=${MLOPS_IMAGE_TAG:-latest}
target=x86_64-unknown-linux-gnu   # .cargo/config.toml builds static binaries for it

if [ "${MLOPS_DOCKER_SKIP_BUILD:-0}" != 1 ]; then
  if [ "$profile" = release ]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
fi
dir=$profile; [ "$profile" = debug ] || dir=release

context=target/docker-context
rm -rf "$context"
mkdir -p "$context/bin" "$context/data"
for bin in mlops mlops-ingestion mlops-training mlops-registry mlops-inference mlops-orchestrator; do
  src="target/$target/$dir/$bin"
  [ -x "$src" ] || { echo "missing $src: build the workspace first" >&2; exit 1; }
  # Debug info is of no use in the image and makes it several times larger.
  strip --strip-debug -o "$context/bin/$bin" "$src"
done
docker build -q -f deploy/Dockerfile -t "mlops:$tag" "$context"
echo "built mlops:$tag"
