"""``bertflow train``: ``spacy train`` in one process, data-parallel
(``bertflow.training.distributed``) when torchrun launches several."""
import contextlib
import datetime
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Union

from bertflow.errors import BertflowError, Errors, logger
from bertflow.files.outputs import check_new_output
from bertflow.training.distributed import Trainer, launch_info


def whole_number_dropout_as_float(config_path: Union[str, Path], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """``[training] dropout = 0`` (or ``--training.dropout 1``) as the float
    spaCy's loop needs: it takes an int for a schedule and fails mid-run."""
    value = overrides.get("training.dropout")
    if value is None:
        try:
            from spacy.util import load_config

            value = load_config(config_path, interpolate=False).get("training", {}).get("dropout")
        except Exception:  # noqa: BLE001  (a bad or missing config: spacy train reports it)
            return overrides
    if isinstance(value, int) and not isinstance(value, bool):
        overrides["training.dropout"] = float(value)
    return overrides


def train(
    config_path: Union[str, Path],
    output_path: Optional[Union[str, Path]] = None,
    *,
    use_gpu: int = -1,
    overrides: Optional[Dict[str, Any]] = None,
    timeout_s: float = 1800.0,
    force: bool = False,
) -> None:
    """``spacy train``, data-parallel when launched by torchrun with several processes.

    config_path / output_path / use_gpu / overrides: as ``spacy train``. With
        several processes ``use_gpu >= 0`` puts each rank on the GPU
        ``LOCAL_RANK`` (nccl); otherwise ranks run on the CPU (gloo).
    timeout_s (float): how long a rank waits for the others at a collective
        before the job fails (a rank that died, a hung machine).
    force (bool): replace a model-best/model-last already in ``output_path``
        (refused without it, as every bertflow command that writes refuses).
    """
    from spacy.cli.train import train as spacy_train

    if output_path is not None:
        for name in ("model-best", "model-last"):
            check_new_output(Path(output_path) / name, force, "The trained pipeline")

    rank, world, local = launch_info()
    overrides = whole_number_dropout_as_float(config_path, dict(overrides or {}))
    if world <= 1:  # one process: exactly spacy train
        spacy_train(config_path, output_path, use_gpu=use_gpu, overrides=overrides)
        return
    config_path = Path(config_path)
    if not config_path.is_file():
        raise BertflowError(Errors.E072.format(config_path=config_path))
    import torch
    import torch.distributed as dist
    from spacy import util
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_nlp

    gpu = use_gpu >= 0
    if gpu:
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            raise BertflowError(Errors.E082.format(rank=rank, local=local, n=torch.cuda.device_count()))
        torch.cuda.set_device(local)
        from thinc.api import require_gpu

        require_gpu(local)
    device = torch.device("cuda", local) if gpu else torch.device("cpu")
    ours = not dist.is_initialized()  # Ray Train's TorchTrainer, for one, starts the group itself
    if ours:
        dist.init_process_group("nccl" if gpu else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    trainer = Trainer(rank, world, device)
    quiet = open(os.devnull, "w") if rank else None
    try:
        output = Path(output_path) if output_path is not None and rank == 0 else None
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
        config = util.load_config(config_path, overrides=overrides, interpolate=False)
        if rank:  # rank 0 logs (a file logger on every rank would write the same file N times)
            config["training"]["logger"] = {"@loggers": "bertflow.no_logger.v1"}
        with contextlib.redirect_stdout(quiet) if rank else contextlib.nullcontext():
            nlp = init_nlp(config, use_gpu=local if gpu else -1)
            frozen = list(config["training"].get("frozen_components", []))
            with trainer.attached(nlp, frozen):
                trainer.broadcast_weights()
                out = sys.stdout if rank == 0 else quiet
                err = sys.stderr if rank == 0 else quiet
                train_nlp(nlp, output, use_gpu=local if gpu else -1, stdout=out, stderr=err)
        if rank == 0:
            per_step = 1000 * trainer.sync_seconds / max(trainer.syncs, 1)
            logger.info(f"{world} ranks: gradient averaging {per_step:.1f} ms per step over "
                  f"{trainer.syncs} steps ({len(trainer.weights.thinc) + len(trainer.weights.torch)} weights)"
                  + (f"; {trainer.skipped_batches} batches with fewer groups than ranks skipped"
                     if trainer.skipped_batches else ""))
        dist.barrier()  # the others wait until rank 0 has written the output
    finally:
        if quiet is not None:
            quiet.close()
        if ours and dist.is_initialized():
            dist.destroy_process_group()
