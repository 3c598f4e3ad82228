#!/usr/bin/env bash
# The exact commands that trained every shipped model (run from the repository root).
set -euo pipefail
