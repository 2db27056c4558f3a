#!/usr/bin/env bash
# Installs PyTorch 2.11.0 into the project-local venv .venv (idempotent).
# The exporter links against .venv's libtorch (see .cargo/config.toml); an exported
# LIBTORCH pointing at another torch 2.11.0 install overrides it.
set -euo pipefail
cd "$(dirname "$0")/.."
want=2.11.0
py=.venv/bin/python
if [ -x "$py" ] && "$py" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$want' else 1)" 2>/dev/null; then
  exit 0
fi
echo "setup-torch: installing torch==$want into .venv (about 1 minute, 4.6 GB)" >&2
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check "torch==$want" numpy
"$py" -c "import torch; print('setup-torch: torch', torch.__version__, 'at', torch.__path__[0])" >&2
