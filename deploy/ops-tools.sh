#!/usr/bin/env bash
# The tools `make test` checks the deploy files with, installed once per machine:
#   ops-tools.sh prometheus   prometheus + promtool: Debian's `prometheus` package (root and apt-get)
#   ops-tools.sh kubernetes   kubeconform and kustomize (`go install`), and Kubernetes' JSON schemas
#                             made from the OpenAPI document of the k8s.io/kubernetes Go module
#                             (deploy/k8s/json_schemas.py), into LEADPULSE_CACHE/bin and /k8s-schemas
# Where a tool cannot be installed this prints one line and exits 0: the tests that need it
# then skip, each with one line saying what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LEADPULSE_CACHE:-$HOME/.cache/leadpulse}"
KUBECONFORM_VERSION=v0.7.0
KUSTOMIZE_VERSION=v5.7.1  # the newest that builds with Go 1.26
KUBERNETES_VERSION=v1.34.4

prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ops-tools: prometheus not installed (needs root and apt-get: apt-get install prometheus); its tests skip" >&2
    return 0
  fi
  # --no-install-recommends: the node exporter and the other recommended packages are not needed
  if ! { apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
         || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }; then
    echo "ops-tools: apt-get could not install prometheus; its tests skip" >&2
  fi
}

# A Go tool built once per version: LEADPULSE_CACHE/bin/NAME, its version in NAME.version.
go_tool() {
  local name="$1" module="$2" version="$3" go="$4"
  if [ "$(cat "$cache/bin/$name.version" 2>/dev/null)" = "$version" ] && [ -x "$cache/bin/$name" ]; then return 0; fi
  mkdir -p "$cache/bin"
  if GOBIN="$cache/bin" GOFLAGS=-modcacherw "$go" install "$module@$version" >/dev/null 2>&1; then
    echo "$version" > "$cache/bin/$name.version"
  else
    echo "ops-tools: go install $module@$version failed; its tests skip" >&2
  fi
}

kubernetes() {
  local go
  go="$(command -v go || echo /usr/local/go/bin/go)"
  if [ ! -x "$go" ]; then
    echo "ops-tools: no Go toolchain (go on PATH or /usr/local/go/bin/go): the kubeconform tests skip" >&2
    return 0
  fi
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" "$go"
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" "$go"
  local schemas="$cache/k8s-schemas"
  if [ "$(cat "$schemas/VERSION" 2>/dev/null)" = "$KUBERNETES_VERSION" ]; then return 0; fi
  local module
  if ! module="$(cd "$cache" && GOFLAGS=-modcacherw "$go" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
                 | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"; then
    echo "ops-tools: go mod download k8s.io/kubernetes@$KUBERNETES_VERSION failed: the kubeconform tests skip" >&2
    return 0
  fi
  rm -rf "$schemas"
  python3 "$here/k8s/json_schemas.py" "$module/api/openapi-spec/swagger.json" "$schemas"
  echo "$KUBERNETES_VERSION" > "$schemas/VERSION"
}

case "${1:-}" in
  prometheus) prometheus ;;
  kubernetes) kubernetes ;;
  *) echo "usage: $0 prometheus|kubernetes" >&2; exit 2 ;;
esac
