"""Contrastive pretraining on noise: the training loop, top to bottom.

Two recipes (Baradad et al. 2021, Sec. 4; reference Sec. 8), reference hyperparameters as the
defaults:

* ``small``: SmallAlexNet, Alignment + Uniformity (alpha 2, t 2, weights 1/1), SGD lr 0.36 at
  batch 768 (0.12 per 256, scaled linearly when only the batch changes), momentum 0.9, weight
  decay 1e-4, 200 epochs, lr x0.1 at epochs 155/170/185 (at the same fractions of the run when
  --epochs differs), 64 px crops of 128 px images.
* ``moco``: MoCo v2 on ResNet-50: dim 128, queue 65,536, momentum 0.999, temperature 0.2, MLP
  head, SGD lr 0.03 per 256 images (upstream MoCo v2's ImageNet default, which the paper says it
  used; the reference repository's 0.015 is not the default we pick), momentum 0.9, weight decay
  1e-4, cosine schedule over 200 epochs (per epoch, as MoCo), aug-plus at 224 px of 256 px images.

The run folder RUN holds config.json (resolved config and environment), log.jsonl (one JSON line
per log interval and per epoch), checkpoint.pt (full state, see checkpoint.py) and encoder.pt
(the backbone alone, see encoders.py), both rewritten at every checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisevision.data.encode import write_atomic
from noisevision.errors import Stopped, UsageError, check
from noisevision.locks import FolderLock
from noisevision.provenance import provenance
from noisevision.safety import check_fits
from noisevision.ssl import ddp
from noisevision.ssl.augment import TwoViewAugment, moco_augment, small_augment
from noisevision.ssl.checkpoint import BackgroundSaver, save_checkpoint, snapshot
from noisevision.ssl.config import PretrainConfig, learning_rate
from noisevision.ssl.encoders import build_encoder, encoder_payload, write_encoder
from noisevision.ssl.guards import StopSignals, check_moco_buffers, check_step_memory
from noisevision.ssl.losses import align_uniform_loss
from noisevision.ssl.mixing import mix_batch, step_seed
from noisevision.ssl.moco import MoCo
from noisevision.ssl.prefetch import prefetch
from noisevision.ssl.run_folder import prepare_run_folder, reset_started_run, trim_log
from noisevision.ssl.sources import DataSource, _seed_for


def build_model(cfg: PretrainConfig) -> nn.Module:
    """The trained module: SmallAlexNet (small) or MoCo around a ResNet-50 (moco)."""
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        if cfg.recipe == "small":
            return build_encoder("small_alexnet", width=cfg.width, input_size=cfg.crop)
        return MoCo(build_encoder("resnet50"), dim=cfg.moco_dim, queue_size=cfg.moco_queue,
                    momentum=cfg.moco_momentum, temperature=cfg.moco_temperature,
                    mlp=cfg.moco_mlp, bn=cfg.moco_bn, seed=cfg.seed)


def _check_cache_memory(source: DataSource, cfg: PretrainConfig, dev: torch.device,
                        world: int) -> None:
    """A cached index set that cannot fit in memory is refused before anything starts."""
    side = cfg.image_size
    cached = sum(-(-n // world) for n, c in zip(source.shares, source.components, strict=True)
                 if getattr(c, "mode", None) == "cached")
    if cached:
        check_fits(cached * 3 * side * side, f"the cached set of {cached:,} images at {side} px",
                   "lower --images or --resolution, or pass --continuous", dev, fraction=0.8)


def _nonfinite_message(run: Path, epoch: int, step: int,
                       last_good: tuple[int, int] | None) -> str:
    where = f"loss became nan/inf by epoch {epoch} step {step}; training stopped"
    if last_good is None:
        return (f"{where}; no checkpoint was written yet, so rerun the same command with a "
                "lower --lr (the run starts again from step 0)")
    return (f"{where}; last good checkpoint: {run / 'checkpoint.pt'} (epoch {last_good[0]}, "
            f"step {last_good[1]}); the run is deterministic, so start a new run (another "
            "--out) with a lower --lr, or check the data")


class _Logger:
    def __init__(self, run: Path, enabled: bool, tensorboard: bool, done: int = 0) -> None:
        self.enabled = enabled
        self.path = run / "log.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--tensorboard needs the `tensorboard` package "
                                 "(pip install tensorboard)") from None
            # resumed: events past the checkpoint (logged again now) are hidden, as log.jsonl's
            # lines past it are dropped
            self.tb = SummaryWriter(str(run / "tensorboard"), purge_step=done + 1 if done else None)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and "global_step" in record:
            for k, v in record.items():
                if isinstance(v, float):
                    self.tb.add_scalar(k, v, record["global_step"])


def pretrain(config: PretrainConfig, *, resume: bool = False,
             explicit: set[str] | None = None, stop_after: int | None = None) -> Path:
    """Train as `config` says (or continue RUN/checkpoint.pt); returns the run folder.

    `explicit`: the config fields the user gave (the CLI passes its flags); on --resume these
    must agree with the run's stored config except RESUME_CHANGEABLE ones. None (library calls):
    every field that differs from PretrainConfig's default counts as given. `stop_after`: stop
    abruptly after this many steps in all, as a kill would (for tests of resuming).
    """
    info = ddp.init_distributed(config.device)
    trainer = None
    stops = StopSignals()
    lock = FolderLock(config.out, "run folder", "wait for that run to end (or stop it), or "
                      "choose another --out") if info.is_main and config.out else None
    try:
        if lock is not None:
            lock.acquire()  # an existing folder: before its state is read
        trainer = _Trainer.set_up(config, resume, info, explicit)
        if lock is not None:
            lock.acquire()  # a new folder: as soon as it exists
        trainer.stops = stops.install()  # set-up (rendering the index set) keeps the defaults
        while trainer.epoch < trainer.cfg.epochs:
            if not trainer.run_epoch(stop_after):
                trainer.saver.wait()
                return trainer.run  # simulated kill: nothing more is written
        return trainer.finish()
    except BaseException:
        if trainer is not None:  # the save in flight still lands; the first error is raised
            with contextlib.suppress(Exception):
                trainer.saver.wait()
        raise
    finally:
        stops.restore()
        if lock is not None:
            lock.release()
        ddp.shutdown_distributed()


def save_payloads(model: nn.Module, optimizer: torch.optim.Optimizer, backbone: nn.Module,
                  arch: str, meta: dict, position: dict) -> tuple[dict, dict]:
    """(checkpoint.pt's state, encoder.pt's payload) at this step, copied to host memory once:
    the encoder's weights are the backbone's entries of the model's copy."""
    weights = snapshot(model.state_dict())
    prefix = next(name for name, m in model.named_modules() if m is backbone)
    backbone_weights = weights if not prefix else {
        k[len(prefix) + 1:]: v for k, v in weights.items() if k.startswith(prefix + ".")}
    state = {**position, "model": weights, "optimizer": snapshot(optimizer.state_dict())}
    return state, encoder_payload(backbone, arch, meta, state=backbone_weights)


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2).encode())


class _Trainer:
    """One run: `set_up` checks everything and builds the parts, `run_epoch` trains one epoch
    (logging, non-finite checks, checkpoints), `save` writes checkpoint.pt and encoder.pt."""

    stops: StopSignals | None = None  # preemption signals, while the epochs run

    @classmethod
    def set_up(cls, config: PretrainConfig, resume: bool, info: ddp.DistInfo,
               explicit: set[str] | None) -> _Trainer:
        self = cls()
        self.saver = BackgroundSaver()
        cfg, state, note = prepare_run_folder(config, resume, explicit)
        self.cfg, self.info, self.run = cfg, info, Path(cfg.out)
        if note and info.is_main:
            print(f"noisevision: {note}", file=sys.stderr)
        self._check_and_build(state)
        self._write_run_folder(state)
        return self

    # ---- set-up: every check runs before anything is written
    def _check_and_build(self, state: dict | None) -> None:
        cfg, info = self.cfg, self.info
        check(cfg.batch_size % info.world_size == 0, f"batch_size {cfg.batch_size} must be a "
              f"multiple of the number of processes ({info.world_size})")
        check(cfg.recipe == "moco" or cfg.batch_size // info.world_size >= 2,
              "batch_size per process must be >= 2 for the uniformity loss")
        check(cfg.mix == "none" or cfg.mix_count <= cfg.batch_size // info.world_size,
              f"--mix-count {cfg.mix_count} is more than the {cfg.batch_size // info.world_size}"
              " images of a process's batch that an image mixes with (allowed: --mix-count <= "
              "--batch-size / processes)")
        self.dev, self.local_batch = info.device, cfg.batch_size // info.world_size
        self.progress = info.is_main and not cfg.quiet
        self.source = source = DataSource(
            cfg.data, image_size=cfg.image_size, images=cfg.images, seed=cfg.seed,
            generator_mode=cfg.generator_mode, workers=cfg.workers,
            render_batch=cfg.render_batch)
        self.steps_per_epoch = (sum(n // info.world_size for n in source.shares)
                                // self.local_batch)
        if self.steps_per_epoch < 1:
            raise UsageError(f"an epoch of {source.images} images holds no full batch of "
                             f"{cfg.batch_size} (lower --batch-size or raise --images)")
        side = cfg.pre_resize or cfg.image_size
        check(cfg.crop <= side, f"crop {cfg.crop} is larger than the {side} px image it is cut "
              "from: allowed --crop <= " + ("--pre-resize" if cfg.pre_resize
                                            else "--resolution (or the folder's image side)"))
        _check_cache_memory(source, cfg, self.dev, info.world_size)
        check(cfg.generator_mode != "continuous" or source.images * cfg.epochs <= 2**40,
              f"--continuous draws --images x --epochs = {source.images * cfg.epochs:,} "
              "fresh indices, more than the 2**40 of the index space: lower --images or "
              "--epochs")
        self.aug_cfg = (small_augment(cfg.crop, cfg.pre_resize) if cfg.recipe == "small"
                        else moco_augment(cfg.crop))
        self.augment = TwoViewAugment(self.aug_cfg, cfg.seed)
        self._build_model(state)
        check_step_memory(self.backbone, self.cfg, self.local_batch, self.dev)

    def _build_model(self, state: dict | None) -> None:
        cfg, dev = self.cfg, self.dev
        check_moco_buffers(cfg, dev)
        model = build_model(cfg).to(dev)
        self.use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto"
                                                    and dev.type == "cuda")
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None
                              else dev.type == "cuda")
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.epoch, self.step = 0, 0
        if state is not None:
            ckpt = str(self.run / "checkpoint.pt")
            try:
                model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
            except (KeyError, ValueError, RuntimeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UsageError(f"checkpoint {ckpt!r} does not fit the model of its own "
                                 f"config ({first})") from None
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            if not (0 <= self.epoch and 0 <= self.step <= self.steps_per_epoch):
                raise UsageError(f"checkpoint {ckpt!r} holds an impossible position (epoch "
                                 f"{self.epoch}, step {self.step})")
        self.model = model
        self.train_model: nn.Module = model
        if self.info.distributed:
            self.train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.backbone = model if cfg.recipe == "small" else model.backbone
        self.arch = "small_alexnet" if cfg.recipe == "small" else "resnet50"
        self.done = self.epoch * self.steps_per_epoch + self.step
        self.last_good = (self.epoch, self.step) if state is not None else None

    def _write_run_folder(self, state: dict | None) -> None:
        from tqdm import tqdm

        cfg, info, run = self.cfg, self.info, self.run
        if info.is_main:
            run.mkdir(parents=True, exist_ok=True)
            if state is None:
                reset_started_run(run)
            else:
                trim_log(run / "log.jsonl", self.done)
            _write_json(run / "config.json", {
                "config": dataclasses.asdict(cfg), "augment": dataclasses.asdict(self.aug_cfg),
                "data": None, "environment": provenance(self.dev, info.world_size)})
        self.logger = _Logger(run, info.is_main, cfg.tensorboard, self.done)
        self.source.prepare(self.dev, info.rank, info.world_size, self.progress)
        if info.is_main:
            cfg_json = json.loads((run / "config.json").read_text())
            cfg_json["data"] = self.source.describe()
            _write_json(run / "config.json", cfg_json)
        total = cfg.epochs * self.steps_per_epoch * cfg.batch_size
        self.bar = tqdm(total=total, initial=self.done * cfg.batch_size, unit="img",
                        unit_scale=True, disable=not self.progress,
                        desc=f"pretrain {cfg.recipe}")
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.dev)
        self.autocast = (torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.use_bf16
                         else contextlib.nullcontext())

    # ---- one epoch
    def _loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
        cfg, b = self.cfg, self.local_batch
        if cfg.mix != "none":  # Shaders21k's sample mixing, drawn from the data position
            images, _, _ = mix_batch(images, cfg.mix, cfg.mix_count, step_seed(
                cfg.seed, self.info.rank, self.epoch, self.step))
        self.augment.reseed(_seed_for(cfg.seed, "augment", self.info.rank, self.epoch,
                                      self.step))
        v1, v2 = self.augment(images)                                # (b, 3, crop, crop) x 2
        if self.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            if cfg.recipe == "small":
                z = self.train_model(torch.cat([v1, v2]))            # (2b, 128) unit rows
                return align_uniform_loss(z[:b], z[b:], alpha=cfg.align_alpha, t=cfg.unif_t)
            self.model.shuffle_generator.manual_seed(_seed_for(cfg.seed, "shuffle", self.done))
            loss, _ = self.train_model(v1, v2)
            return loss, {}

    def run_epoch(self, stop_after: int | None = None) -> bool:
        """Train the rest of the current epoch; False when `stop_after` steps were reached."""
        cfg = self.cfg
        lr = learning_rate(cfg, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.train_model.train()
        t_log, n_log = time.perf_counter(), 0
        stopping = None
        for images in prefetch(self.source.epoch_batches(self.epoch, self.local_batch,
                                                         start_step=self.step), self.dev):
            loss, parts = self._loss(images)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.nonfinite |= ~torch.isfinite(loss.detach())
            self.step, self.done, n_log = self.step + 1, self.done + 1, n_log + 1
            self.bar.update(cfg.batch_size)
            at_end = self.step == self.steps_per_epoch
            ckpt_due = at_end or (cfg.checkpoint_every and self.done % cfg.checkpoint_every == 0)
            if self.done % cfg.log_every == 0 or ckpt_due:
                self._log(loss, parts, lr, n_log / max(time.perf_counter() - t_log, 1e-9))
                t_log, n_log = time.perf_counter(), 0
                stopping = self._stop_agreed()
            if (ckpt_due or stopping) and not at_end:
                self.save(self.epoch, self.step)
            if stopping and not at_end:
                self._stop(stopping)
            if stop_after is not None and self.done >= stop_after:
                self.bar.close()
                return False
        self.epoch, self.step = self.epoch + 1, 0
        self.save(self.epoch, 0)
        if self.dev.type == "cuda":
            self.logger.write({"epoch_done": self.epoch, "peak_memory_gib":
                               torch.cuda.max_memory_allocated(self.dev) / 2**30})
        if stopping and self.epoch < cfg.epochs:
            self._stop(stopping)
        return True

    def _stop_agreed(self) -> int | None:
        """The stop signal if any rank received one (every rank gets the same answer)."""
        mine = float(self.stops.received or 0) if self.stops is not None else 0.0
        if not ddp.is_distributed() and not mine:
            return None
        agreed = float(ddp.all_reduce_mean(torch.tensor(mine, device=self.dev)))
        return (int(mine) or signal.SIGTERM) if agreed > 0 else None

    def _stop(self, signum: int) -> None:
        """The checkpoint of this step lands, then Stopped (one line, exit 128 + signum)."""
        self.bar.close()
        self.saver.wait()  # a failed save (a full disk) is its own one-line error
        self.logger.write({"stopped": signal.Signals(signum).name, "epoch": self.epoch,
                           "step": self.step, "global_step": self.done})
        raise Stopped(f"stopped by {signal.Signals(signum).name} at epoch {self.epoch}, step "
                      f"{self.step}: the checkpoint is saved in {self.run}; the same command "
                      "with --resume continues from there", signum)

    def _log(self, loss: torch.Tensor, parts: dict, lr: float, steps_per_s: float) -> None:
        if bool(ddp.all_reduce_mean(self.nonfinite.float()) > 0):
            self.bar.close()
            raise UsageError(_nonfinite_message(self.run, self.epoch, self.step,
                                                self.last_good))
        rec = {"epoch": self.epoch, "step": self.step, "global_step": self.done, "lr": lr,
               "loss": float(ddp.all_reduce_mean(loss)),
               "images_per_s": steps_per_s * self.cfg.batch_size}
        rec.update({k: float(ddp.all_reduce_mean(v)) for k, v in parts.items()})
        self.logger.write(rec)
        self.bar.set_postfix(loss=f"{rec['loss']:.4f}")

    # ---- save
    def save(self, next_epoch: int, next_step: int) -> None:
        """checkpoint.pt (everything to continue) and encoder.pt (the backbone), rank 0."""
        self.last_good = (next_epoch, next_step)
        if not self.info.is_main:
            return
        cfg = self.cfg
        meta = {"recipe": cfg.recipe, "data": cfg.data, "epochs": cfg.epochs,
                "epochs_done": next_epoch + next_step / self.steps_per_epoch,
                "images_per_epoch": self.source.images, "crop": cfg.crop, "seed": cfg.seed,
                "feature_layer": getattr(self.backbone, "feature_layer", -1)}
        state, encoder = save_payloads(  # copied now; written beside the next steps
            self.model, self.optimizer, self.backbone, self.arch, meta, {
                "config": dataclasses.asdict(cfg), "epoch": next_epoch, "step": next_step,
                "schedule": {"recipe": cfg.recipe, "base_lr": cfg.lr,
                             "lr_next": learning_rate(cfg, next_epoch)}})
        run = self.run

        def write() -> None:
            save_checkpoint(run / "checkpoint.pt", state)
            write_encoder(run / "encoder.pt", encoder)

        self.saver.submit(write)

    def finish(self) -> Path:
        """Close the run: the last save landed, the replica check (every rank's weights
        identical under DDP)."""
        self.bar.close()
        self.saver.wait()
        with torch.no_grad():
            local = torch.stack([p.double().sum() for p in self.model.parameters()]).sum()
            sums = ddp.concat_all_gather(local.view(1).to(self.dev)).tolist()
        self.logger.write({"finished": True, "epochs": self.cfg.epochs,
                           "global_step": self.done, "param_checksums": sums})
        if len(set(sums)) > 1:
            raise RuntimeError(f"DDP replicas diverged: parameter checksums {sums}")
        ddp.barrier()
        return self.run
