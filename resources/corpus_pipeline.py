"""How the datatrove corpus pipelines run: which executor, how many tasks at once, where scratch goes.

What the pipelines compute (thresholds, MinHash parameters, number of tasks per partition) lives in the
preset; this resource only says *where* it runs, so changing it never changes an artifact's version.

    resources:
      corpus_pipeline:
        config: {executor: slurm, workers: 64, work_dir: /shared/kexaone-work, slurm_partition: cpu}

Environment defaults: ``KEXAONE_CORPUS_EXECUTOR`` (local | slurm | ray), ``KEXAONE_CORPUS_WORKERS``,
``KEXAONE_CORPUS_WORK_DIR``, ``KEXAONE_SLURM_PARTITION`` (see ``kexaone_dag/resources_by_env.py``).
"""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext

from corpus.executors import CorpusExecutorError, ExecutorSettings


class CorpusPipeline(ConfigurableResource):
    executor: str = "local"
    workers: int = 1
    work_dir: str | None = None
    slurm_partition: str | None = None
    slurm_time: str = "24:00:00"
    slurm_cpus_per_task: int = 1
    slurm_mem_per_cpu_gb: int = 2
    slurm_qos: str | None = None
    slurm_venv_path: str | None = None
    slurm_sbatch_args: dict[str, str] = {}
    ray_cpus_per_task: int = 1
    ray_mem_per_cpu_gb: float = 2.0
    poll_interval_s: float = 30.0

    def settings(self) -> ExecutorSettings:
        return ExecutorSettings(
            kind=self.executor,
            workers=self.workers,
            work_dir=self.work_dir,
            slurm_partition=self.slurm_partition,
            slurm_time=self.slurm_time,
            slurm_cpus_per_task=self.slurm_cpus_per_task,
            slurm_mem_per_cpu_gb=self.slurm_mem_per_cpu_gb,
            slurm_qos=self.slurm_qos,
            slurm_venv_path=self.slurm_venv_path,
            slurm_sbatch_args=dict(self.slurm_sbatch_args),
            ray_cpus_per_task=self.ray_cpus_per_task,
            ray_mem_per_cpu_gb=self.ray_mem_per_cpu_gb,
            poll_interval_s=self.poll_interval_s,
        )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """A wrong executor fails the run before any step computes, with one line."""
        self.settings().validate()


__all__ = ["CorpusExecutorError", "CorpusPipeline"]
