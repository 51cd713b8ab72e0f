"""A real Slurm cluster in a temp dir (one node: this machine), for tests of the Slurm paths.

``nodes=N`` makes N "nodes" of this one host (``n1``..``nN``, each its own ``slurmd -N nK`` on its own port,
``NodeAddr=127.0.0.1``): what multi-node jobs (``srun`` over several nodes, a torchrun rendezvous) need.

Nothing in /etc: clients find it through ``SLURM_CONF``. No munge (``auth/none``). Start-up takes well under
a second. ``scripts/bootstrap.sh`` installs Slurm (Debian's slurm-wlm) where it can (root with apt-get);
elsewhere ``available()`` is False and the tests that need it are skipped with that reason.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd")


def available() -> bool:
    return all(shutil.which(d) or Path(f"/usr/sbin/{d}").exists() for d in DAEMONS) and shutil.which("sbatch")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    def __init__(self, root: Path, cpus: int = 2, kill_invalid_depend: bool = True, nodes: int = 1):
        self.root, self.host = Path(root), socket.gethostname()
        # one node: this machine under its own name; several: n1..nN, all of them this machine
        self.nodes = [self.host] if nodes == 1 else [f"n{i}" for i in range(1, nodes + 1)]
        self.node = self.nodes[0]
        self.conf = self.root / "slurm.conf"
        for d in ("state", "spool", "log", *(f"spool/{n}" for n in self.nodes)):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._slurmds: list[subprocess.Popen] = []
        (self.root / "plugstack.conf").write_text("")
        user = getpass.getuser()
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=kexaone-test",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    f"SlurmUser={user}",
                    f"SlurmdUser={user}",
                    "AuthType=auth/none",
                    "CredType=cred/none",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "MpiDefault=none",
                    f"StateSaveLocation={self.root}/state",
                    f"SlurmdSpoolDir={self.root}/spool/%n",
                    f"SlurmctldPidFile={self.root}/slurmctld.pid",
                    f"SlurmdPidFile={self.root}/{'slurmd.pid' if nodes == 1 else 'slurmd-%n.pid'}",
                    f"SlurmctldLogFile={self.root}/log/slurmctld.log",
                    f"SlurmdLogFile={self.root}/log/{'slurmd.log' if nodes == 1 else 'slurmd-%n.log'}",
                    f"PlugStackConfig={self.root}/plugstack.conf",
                    "ReturnToService=2",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/none",
                    "MinJobAge=300",
                    *(["DependencyParameters=kill_invalid_depend"] if kill_invalid_depend else []),
                    *(
                        [f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 State=UNKNOWN"]
                        if nodes == 1
                        else [
                            f"NodeName={n} NodeHostname={self.host} NodeAddr=127.0.0.1 Port={_free_port()} "
                            f"CPUs={cpus} RealMemory=4000 State=UNKNOWN"
                            for n in self.nodes
                        ]
                    ),
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _daemon(self, daemon: str) -> str:
        return shutil.which(daemon) or f"/usr/sbin/{daemon}"

    def start(self, timeout_s: float = 60) -> "SlurmCluster":
        commands = [[self._daemon("slurmctld"), "-f", str(self.conf)]]
        if len(self.nodes) == 1:
            commands.append([self._daemon("slurmd"), "-f", str(self.conf)])
        for command in commands:
            subprocess.run(command, env=self.env, check=True, start_new_session=True, timeout=60)
        if len(self.nodes) > 1:  # one pid file for all: each node's slurmd stays in the foreground, ours to stop
            self._slurmds = [
                subprocess.Popen(
                    [self._daemon("slurmd"), "-D", "-f", str(self.conf), "-N", n],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                for n in self.nodes
            ]
        deadline = time.monotonic() + timeout_s
        while self.run("sinfo", "-h", "-N", "-o", "%T").stdout.split() != ["idle"] * len(self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"temp-dir Slurm not idle after {timeout_s:.0f}s; logs in {self.root}/log")
            time.sleep(0.2)
        return self

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """A client command against this cluster (with a timeout: a client of a dead controller hangs)."""
        return subprocess.run(["timeout", "20", *args], env=self.env, capture_output=True, text=True)

    def drain(self) -> None:
        self.run("scontrol", "update", f"NodeName={self.node}", "State=DRAIN", "Reason=test")

    def resume(self) -> None:
        self.run("scontrol", "update", f"NodeName={self.node}", "State=RESUME")

    def stop(self) -> None:
        self.run("scancel", "-u", getpass.getuser())
        for slurmd in self._slurmds:
            slurmd.terminate()
            try:
                slurmd.wait(timeout=30)
            except subprocess.TimeoutExpired:
                slurmd.kill()
        for daemon in reversed(DAEMONS):
            pid_file = self.root / f"{daemon}.pid"
            if pid_file.exists() and not (daemon == "slurmd" and self._slurmds):
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
