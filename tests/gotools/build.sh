#!/usr/bin/env bash
# Builds the Go test tools from their pinned modules and prints the folder that holds them:
#   compose-config   Compose's own loader and validation (compose-go, the library
#                    `docker compose config` is built on): compose-config/main.go
#   actionlint       the GitHub Actions workflow linter (its PyPI wheel downloads the binary
#                    from GitHub at install time, which cannot work here)
# Each tool is a module of its own (their YAML libraries disagree). Nothing prebuilt is
# downloaded: only source modules through the Go module proxy. Cached in
# <repo>/.cache/gotools/<key>/ (git-ignored), <key> hashing every file here and the Go
# version: built once per pin, in about a minute on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
command -v go >/dev/null || { echo "gotools/build.sh: Go is needed to build the test tools" >&2; exit 1; }
key=$({ cat "$here"/build.sh "$here"/*/go.mod "$here"/*/go.sum "$here"/*/*.go; go env GOVERSION; } | sha256sum | cut -c1-16)
out="$repo/.cache/gotools/$key"
if [ ! -x "$out/compose-config" ] || [ ! -x "$out/actionlint" ]; then
  echo "gotools/build.sh: building compose-config and actionlint ($(go env GOVERSION), key $key)" >&2
  mkdir -p "$out"
  (cd "$here/compose-config" && go build -mod=readonly -trimpath -ldflags='-s -w' -o "$out/compose-config.partial" .)
  (cd "$here/actionlint" && go build -mod=readonly -trimpath -ldflags='-s -w' -o "$out/actionlint.partial" github.com/rhysd/actionlint/cmd/actionlint)
  mv "$out/compose-config.partial" "$out/compose-config"
  mv "$out/actionlint.partial" "$out/actionlint"
fi
echo "$out"
