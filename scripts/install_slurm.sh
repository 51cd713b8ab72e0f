#!/usr/bin/env bash
# Slurm for the tests of the Slurm paths (tests/slurm_cluster.py starts a private cluster in a temp dir;
# nothing here starts a daemon or writes /etc). Installs Debian's slurm-wlm when it is missing and this
# user can (root with apt-get, ~10 s); otherwise says so in one line and those tests are skipped.
set -uo pipefail
if command -v sbatch >/dev/null 2>&1 && { command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; }; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install_slurm: installing slurm-wlm (apt-get) for the Slurm tests"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm) >/tmp/kexaone-install-slurm.log 2>&1; then
    exit 0
  fi
  echo "install_slurm: apt-get failed (log: /tmp/kexaone-install-slurm.log); the Slurm tests will be skipped"
  exit 0
fi
echo "install_slurm: Slurm is not installed and this user cannot apt-get it; the Slurm tests will be skipped"
