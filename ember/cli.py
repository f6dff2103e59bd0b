"""``LightningCLI``: a command line (and YAML configs) for a LightningModule, on jsonargparse.

    # train.py
    from ember.cli import LightningCLI
    LightningCLI(MyModel, MyDataModule)

    python train.py fit --config cfg.yaml --trainer.max_epochs 3 --model.lr 0.1
    python train.py fit --print_config > cfg.yaml      # the full config, defaults included
    python train.py test --ckpt_path best.ckpt --config cfg.yaml

Subcommands ``fit``/``validate``/``test``/``predict`` take the Trainer's arguments (``--trainer.*``),
the model's and datamodule's ``__init__`` arguments (``--model.*``, ``--data.*``), the method's own
(``--ckpt_path``), ``--seed_everything``, and an optimizer / LR scheduler (``--optimizer Adam
--optimizer.lr 0.01 --lr_scheduler StepLR --lr_scheduler.step_size 5``) that replaces the model's
``configure_optimizers``. Before fitting, :class:`SaveConfigCallback` writes the whole config to
``config.yaml`` in the log directory, so that every run can be repeated with ``--config``.

This module also holds ``main``, the ``ember`` console command (``ember plot <log_dir> ...``).
jsonargparse is imported only when a LightningCLI is built: ``pip install 'ember[cli]'``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from types import MethodType
from typing import Any, Union

import torch

from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.seed import seed_everything
from ember.trainer.trainer import Trainer
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

__all__ = ["LightningArgumentParser", "LightningCLI", "LRSchedulerCallable", "OptimizerCallable", "ReduceLROnPlateau",
           "SaveConfigCallback", "instantiate_class", "main"]

ArgsType = Union[list[str], dict[str, Any], None]
# Annotations for models that take their optimizer/scheduler as an argument (dependency injection):
# ``def __init__(self, optimizer: OptimizerCallable = torch.optim.Adam)``, then ``optimizer(self.parameters())``.
OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]
LRSchedulerCallable = Callable[[torch.optim.Optimizer], Union[torch.optim.lr_scheduler.LRScheduler,
                                                                torch.optim.lr_scheduler.ReduceLROnPlateau]]


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """``torch.optim.lr_scheduler.ReduceLROnPlateau`` that knows the metric it watches (``monitor``),
    so that it can be chosen from the command line: ``--lr_scheduler ember.cli.ReduceLROnPlateau
    --lr_scheduler.monitor val_loss``."""

    def __init__(self, optimizer: torch.optim.Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


_LR_SCHEDULER_TYPES = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _import_jsonargparse() -> Any:
    try:
        import jsonargparse
    except ImportError as err:
        raise ModuleNotFoundError("LightningCLI needs jsonargparse: pip install 'ember[cli]' (or pip install "
                                  "'jsonargparse[signatures]>=4.27').") from err
    return jsonargparse


_PARSER_CLASS: type | None = None


def _parser_class() -> type:
    """``LightningArgumentParser``, built on first use so that importing ember.cli needs no jsonargparse."""
    global _PARSER_CLASS
    if _PARSER_CLASS is None:
        _PARSER_CLASS = _build_parser_class(_import_jsonargparse())
    return _PARSER_CLASS


def __getattr__(name: str) -> Any:
    if name == "LightningArgumentParser":
        return _parser_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_parser_class(jsonargparse: Any) -> type:
    class LightningArgumentParser(jsonargparse.ArgumentParser):
        """jsonargparse's ArgumentParser plus ember classes: ``add_lightning_class_args``,
        ``add_optimizer_args``, ``add_lr_scheduler_args``. Environment variables (``PL_TRAINER__MAX_EPOCHS``)
        are read when ``default_env=True``."""

        def __init__(self, *args: Any, description: str = "ember Trainer command line tool",
                     env_prefix: str = "PL", default_env: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env,
                             **kwargs)
            self.callback_keys: list[str] = []
            self._optimizers: dict[str, tuple[Any, str]] = {}
            self._lr_schedulers: dict[str, tuple[Any, str]] = {}

        def add_lightning_class_args(self, lightning_class: Any, nested_key: str, subclass_mode: bool = False,
                                     required: bool = True) -> list[str]:
            """Add the ``__init__`` arguments of a Trainer, LightningModule, LightningDataModule or Callback
            class (or of a function returning one) under ``nested_key``; with ``subclass_mode`` any subclass
            can be chosen (``--model.class_path``)."""
            if callable(lightning_class) and not isinstance(lightning_class, type):
                lightning_class = jsonargparse.class_from_function(lightning_class)
            bases = (Trainer, LightningModule, LightningDataModule, Callback)
            if not (isinstance(lightning_class, type) and issubclass(lightning_class, bases)):
                raise MisconfigurationException(
                    f"add_lightning_class_args({lightning_class!r}): expected a subclass of Trainer, "
                    "LightningModule, LightningDataModule or Callback, or a function returning one.")
            if issubclass(lightning_class, Callback):
                self.callback_keys.append(nested_key)
            if subclass_mode:
                return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False, required=required)
            return self.add_class_arguments(lightning_class, nested_key, fail_untyped=False,
                                            instantiate=not issubclass(lightning_class, Trainer), sub_configs=True)

        def add_optimizer_args(self, optimizer_class: Any = (torch.optim.Optimizer,), nested_key: str = "optimizer",
                               link_to: str = "AUTOMATIC") -> None:
            """Add an optimizer's arguments (a tuple of base classes: any subclass, chosen by name). With
            ``link_to="AUTOMATIC"`` the CLI builds ``configure_optimizers`` from it."""
            self._add_torch_class(optimizer_class, torch.optim.Optimizer, nested_key, "params")
            self._optimizers[nested_key] = (optimizer_class, link_to)

        def add_lr_scheduler_args(self, lr_scheduler_class: Any = _LR_SCHEDULER_TYPES,
                                  nested_key: str = "lr_scheduler", link_to: str = "AUTOMATIC") -> None:
            """Add a learning-rate scheduler's arguments, like ``add_optimizer_args``."""
            self._add_torch_class(lr_scheduler_class, _LR_SCHEDULER_TYPES, nested_key, "optimizer")
            self._lr_schedulers[nested_key] = (lr_scheduler_class, link_to)

        def _add_torch_class(self, classes: Any, base: Any, nested_key: str, skip: str) -> None:
            choices = classes if isinstance(classes, tuple) else (classes,)
            if not all(isinstance(c, type) and issubclass(c, base) for c in choices):
                raise MisconfigurationException(f"{nested_key}: expected subclasses of {base}, got {classes!r}.")
            kwargs = {"instantiate": False, "fail_untyped": False, "skip": {skip}}
            if isinstance(classes, tuple):
                self.add_subclass_arguments(classes, nested_key, **kwargs)
            else:
                self.add_class_arguments(classes, nested_key, sub_configs=True, **kwargs)

    return LightningArgumentParser


def instantiate_class(args: Any, init: dict[str, Any]) -> Any:
    """Build ``init["class_path"]`` with positional ``args`` (one value or a tuple) and ``init["init_args"]``."""
    module_name, _, class_name = init["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    args = args if isinstance(args, tuple) else (args,)
    return cls(*args, **dict(init.get("init_args") or {}))


class SaveConfigCallback(Callback):
    """Write the CLI's config to ``<trainer.log_dir>/<config_filename>`` when the run sets up, so that the
    run can be repeated with ``--config``. Refuses to overwrite an existing file unless ``overwrite``.
    Subclass it and override ``save_config`` to also send the config elsewhere (an experiment tracker)."""

    def __init__(self, parser: Any, config: Any, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False, save_to_log_dir: bool = True) -> None:
        if not save_to_log_dir and type(self).save_config is SaveConfigCallback.save_config:
            raise ValueError("SaveConfigCallback(save_to_log_dir=False) saves nothing; subclass it and implement "
                             "save_config, or leave save_to_log_dir=True.")
        self.parser, self.config, self.config_filename = parser, config, config_filename
        self.overwrite, self.multifile, self.save_to_log_dir = overwrite, multifile, save_to_log_dir
        self.already_saved = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir and trainer.is_global_zero:
            self._write(trainer.log_dir)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True

    def _write(self, log_dir: str) -> None:
        from fsspec.core import url_to_fs

        path = f"{log_dir.rstrip('/')}/{self.config_filename}" if "://" in log_dir else \
            os.path.join(log_dir, self.config_filename)
        fs, _ = url_to_fs(path)
        if not self.overwrite and fs.isfile(path):
            raise RuntimeError(
                f"SaveConfigCallback: {path} exists already, and writing the config there would overwrite the "
                "record of an earlier run. Delete it, use another log directory, disable the callback with "
                "LightningCLI(save_config_callback=None), or allow it with "
                'LightningCLI(save_config_kwargs={"overwrite": True}).')
        fs.makedirs(log_dir, exist_ok=True)
        if self.multifile:
            self.parser.save(self.config, path, overwrite=True, multifile=True, **_keep_nulls())
            return
        with fs.open(path, "w") as f:
            f.write(_dump_with_nulls(self.parser, self.config))

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Override to save the config somewhere else too (runs on global rank 0)."""


class LightningCLI:
    """Parse the command line (and config files) into a Trainer, a model and a datamodule, then run the
    subcommand (``fit``/``validate``/``test``/``predict``) or, with ``run=False``, only build them.

    After construction ``cli.trainer``, ``cli.model``, ``cli.datamodule`` (None without one), ``cli.config``
    (the parsed config), ``cli.config_init`` (with the classes built), ``cli.subcommand`` and
    ``cli.parser`` are available. Override ``add_arguments_to_parser`` to add arguments or links, and
    ``before_<subcommand>``/``after_<subcommand>`` to run code around the subcommand.

    Args:
        model_class: the LightningModule class (or a function returning one); None: any, by class path.
        datamodule_class: the LightningDataModule class; None: any by class path, or none at all.
        save_config_callback: the callback that writes config.yaml (None: do not write it).
        save_config_kwargs: its extra arguments (``overwrite``, ``config_filename``, ``multifile``).
        trainer_class: the Trainer class (or a function returning one).
        trainer_defaults: defaults for the Trainer's arguments (``callbacks`` are added to the parsed ones).
        seed_everything_default: ``--seed_everything``'s default: True picks (and records) a random seed,
            an int seeds with it, False does not seed.
        parser_kwargs: keyword arguments for the parser; a dict per subcommand name for the subparsers.
        parser_class: the parser class (default :class:`LightningArgumentParser`).
        subclass_mode_model, subclass_mode_data: accept subclasses of the given classes (by class path).
        args: the arguments to parse instead of ``sys.argv[1:]`` (a list, a dict or a Namespace).
        run: run the subcommand (True) or only build the objects from arguments without a subcommand.
        auto_configure_optimizers: add ``--optimizer``/``--lr_scheduler`` and, when given, use them in place
            of the model's ``configure_optimizers``.
        load_from_checkpoint_support: with ``--ckpt_path``, take the model's hyperparameters from the
            checkpoint (they override the config).
    """

    def __init__(self, model_class: Any = None, datamodule_class: Any = None,
                 save_config_callback: type[SaveConfigCallback] | None = SaveConfigCallback,
                 save_config_kwargs: dict[str, Any] | None = None, trainer_class: Any = Trainer,
                 trainer_defaults: dict[str, Any] | None = None, seed_everything_default: bool | int = True,
                 parser_kwargs: dict[str, Any] | None = None, parser_class: type | None = None,
                 subclass_mode_model: bool = False, subclass_mode_data: bool = False, args: ArgsType = None,
                 run: bool = True, auto_configure_optimizers: bool = True,
                 load_from_checkpoint_support: bool = True) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class or _parser_class()
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class, self._model_class = model_class, model_class or LightningModule
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.datamodule_class, self._datamodule_class = datamodule_class, datamodule_class or LightningDataModule
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data

        names = self.subcommands()
        main_kwargs = {k: v for k, v in self.parser_kwargs.items() if k not in names}
        subcommand_kwargs = {k: v for k, v in self.parser_kwargs.items() if k in names}
        self.setup_parser(run, main_kwargs, subcommand_kwargs)
        self.parse_arguments(self.parser, args)
        self.subcommand: str | None = self.config["subcommand"] if run else None
        if load_from_checkpoint_support:
            self._parse_ckpt_path()
        self._set_seed()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # -- the parser --------------------------------------------------------------------------------
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands, each with the method arguments the CLI fills in itself (not parsed)."""
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"},
                "test": {"model", "dataloaders", "datamodule"},
                "predict": {"model", "dataloaders", "datamodule"}}

    def init_parser(self, **kwargs: Any) -> Any:
        """Create a parser that reads config files (``-c/--config``) and prints them (``--print_config``)."""
        from ember import __version__

        jsonargparse = _import_jsonargparse()
        kwargs.setdefault("dump_header", [f"ember=={__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=jsonargparse.ActionConfigFile,
                            help="Path to a configuration file in json or yaml format.")
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:
        self.parser = self.init_parser(**main_kwargs)
        if not add_subcommands:
            self._add_arguments(self.parser)
            return
        self._subcommand_parsers: dict[str, Any] = {}
        self._subcommand_method_arguments: dict[str, list[str]] = {}
        subcommands = self.parser.add_subcommands()
        trainer_class = self._trainer_type()
        for name, skip in self.subcommands().items():
            description = (getattr(trainer_class, name).__doc__ or "").strip().split("\n")[0]
            kwargs = dict(subparser_kwargs.get(name, {}))
            kwargs.setdefault("description", description)
            parser = self.init_parser(**kwargs)
            self._add_arguments(parser)
            self._subcommand_method_arguments[name] = parser.add_method_arguments(trainer_class, name, skip=skip)
            self._subcommand_parsers[name] = parser
            subcommands.add_subcommand(name, parser, help=description)

    def _trainer_type(self) -> type:
        if isinstance(self.trainer_class, type):
            return self.trainer_class
        return _import_jsonargparse().class_from_function(self.trainer_class)

    def _add_arguments(self, parser: Any) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:
                parser.add_optimizer_args((torch.optim.Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(_LR_SCHEDULER_TYPES)
        self.link_optimizers_and_lr_schedulers(parser)

    def add_default_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--seed_everything", type=Union[bool, int], default=self.seed_everything_default,
                            help="An int seeds everything with it before the classes are built; true picks a "
                                 "random seed (recorded in the saved config); false does not seed.")

    def add_core_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data,
                                        required=self.datamodule_class is not None)

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Override to add arguments (``parser.add_argument``, ``parser.add_lightning_class_args``) or links
        (``parser.link_arguments``)."""

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: Any) -> None:
        """Link optimizer/scheduler groups added with ``link_to`` to the model argument they name."""
        for key, (classes, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
            if link_to == "AUTOMATIC":
                continue
            if isinstance(classes, tuple):
                parser.link_arguments(key, link_to)
            else:
                class_path = f"{classes.__module__}.{classes.__name__}"
                parser.link_arguments(key, link_to, compute_fn=lambda init_args, path=class_path: {
                    "class_path": path, "init_args": _as_dict(init_args)})

    def parse_arguments(self, parser: Any, args: ArgsType) -> None:
        """Parse ``args`` (or ``sys.argv[1:]``) into ``self.config``."""
        if args is not None and len(sys.argv) > 1:
            rank_zero_warn(f"LightningCLI got both args={args} and command line arguments {sys.argv[1:]}; only "
                           "args are parsed.")
        jsonargparse = _import_jsonargparse()
        if isinstance(args, (dict, jsonargparse.Namespace)):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path``, the model's hyperparameters saved in the checkpoint override the config."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if not ckpt_path or not os.path.isfile(ckpt_path):
            return
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        if not hparams:
            return
        model = self.config[self.subcommand].get("model")
        if self.subclass_mode_model and model is not None and model.get("class_path"):
            hparams = {"class_path": model["class_path"], "init_args": hparams}
        self.config = self.parser.parse_object({self.subcommand: {"model": hparams}}, self.config)

    def _set_seed(self) -> None:
        seed = self._get(self.config, "seed_everything")
        if seed is False or seed is None:
            return
        seed = seed_everything(None if seed is True else seed, workers=True)
        (self.config[self.subcommand] if self.subcommand else self.config)["seed_everything"] = seed

    # -- building the objects ----------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        """Runs after parsing, before the classes are built."""

    def instantiate_classes(self) -> None:
        """Build the model, datamodule and trainer from the config."""
        instantiate = getattr(self.parser, "instantiate", None) or self.parser.instantiate_classes  # renamed in 4.49
        self.config_init = instantiate(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Runs after the classes are built, before the subcommand."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Build the Trainer from the config (``kwargs`` override it), with the extra callbacks."""
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        config = {**dict(self._get(self.config_init, "trainer", default={})), **kwargs}
        callbacks = config.get("callbacks")
        callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, (list, tuple)) else \
            [callbacks]
        callbacks += extra
        defaults = self.trainer_defaults.get("callbacks", [])
        callbacks += list(defaults) if isinstance(defaults, (list, tuple)) else [defaults]
        if self.save_config_callback is not None and not config.get("fast_dev_run", False):
            callbacks.append(self.save_config_callback(self._parser(self.subcommand),
                                                       self.config.get(str(self.subcommand), self.config),
                                                       **self.save_config_kwargs))
        config["callbacks"] = callbacks
        return self.trainer_class(**config)

    def _parser(self, subcommand: str | None) -> Any:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    def _get(self, config: Any, key: str, default: Any = None) -> Any:
        return config.get(str(self.subcommand), config).get(key, default)

    @staticmethod
    def configure_optimizers(lightning_module: LightningModule, optimizer: torch.optim.Optimizer,
                             lr_scheduler: Any = None) -> Any:
        """What the model's ``configure_optimizers`` returns when ``--optimizer`` is given; override to change."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler,
                                                             "monitor": lr_scheduler.monitor}}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """With ``--optimizer`` (and ``--lr_scheduler``) given, the model's ``configure_optimizers`` builds
        them (when fit calls it, so that parameters created in ``configure_model`` are included)."""
        if not self.auto_configure_optimizers or self.model is None:
            return
        parser = self._parser(subcommand)
        optimizers = [k for k, (_, link) in parser._optimizers.items() if link == "AUTOMATIC"]
        schedulers = [k for k, (_, link) in parser._lr_schedulers.items() if link == "AUTOMATIC"]
        if len(optimizers) > 1 or len(schedulers) > 1:
            raise MisconfigurationException(
                f"{type(self).__name__} can configure at most one optimizer and one lr_scheduler automatically, but "
                f"{optimizers + schedulers} are 'AUTOMATIC'; link them to the model (link_to=...) and implement "
                "configure_optimizers yourself.")
        optimizer_init = self._class_config(parser._optimizers, optimizers)
        if optimizer_init is None:
            return
        scheduler_init = self._class_config(parser._lr_schedulers, schedulers)
        if type(self.model).configure_optimizers is not LightningModule.configure_optimizers:
            rank_zero_warn(f"{type(self.model).__name__}.configure_optimizers is replaced by the optimizer given to "
                           f"{type(self).__name__} (--optimizer).")
        configure = self.configure_optimizers

        def configure_optimizers(module: LightningModule) -> Any:
            optimizer = instantiate_class(module.parameters(), optimizer_init)
            scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
            return configure(module, optimizer, scheduler)

        self.model.configure_optimizers = MethodType(configure_optimizers, self.model)

    def _class_config(self, register: dict[str, tuple[Any, str]], keys: list[str]) -> dict[str, Any] | None:
        """``{"class_path", "init_args"}`` of the optimizer/scheduler group ``keys[0]``, or None if not given."""
        if not keys:
            return None
        classes = register[keys[0]][0]
        value = self._get(self.config_init, keys[0])
        if isinstance(classes, tuple):
            return None if value is None else _as_dict(value)
        if value is None:
            return None
        return {"class_path": f"{classes.__module__}.{classes.__name__}", "init_args": _as_dict(value)}

    # -- running -----------------------------------------------------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        before = getattr(self, f"before_{subcommand}", None)
        if callable(before):
            before()
        run = getattr(self, subcommand, getattr(self.trainer, subcommand))
        run(**self._prepare_subcommand_kwargs(subcommand))
        after = getattr(self, f"after_{subcommand}", None)
        if callable(after):
            after()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        parsed = self.config_init[subcommand]
        kwargs = {k: parsed[k] for k in self._subcommand_method_arguments[subcommand] if k in parsed}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        return kwargs


def _keep_nulls() -> dict[str, bool]:
    """jsonargparse's keyword for "write None values too" (``skip_none`` was renamed ``skip_unset`` in 4.49)."""
    version = tuple(int(p) for p in _import_jsonargparse().__version__.split(".")[:2] if p.isdigit())
    return {"skip_unset": False} if version >= (4, 49) else {"skip_none": False}


def _dump_with_nulls(parser: Any, config: Any) -> str:
    return parser.dump(config, **_keep_nulls())


def _as_dict(value: Any) -> Any:
    return value.as_dict() if hasattr(value, "as_dict") else dict(value) if value is not None else {}


# -- the `ember` console command ---------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``ember plot <log_dir> [<log_dir> ...] [-o metrics.png] [--metrics a,b]``."""
    parser = argparse.ArgumentParser(prog="ember", description="ember command line tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    plot = commands.add_parser("plot", help="plot the metrics of CSVLogger runs to a PNG/SVG/PDF/HTML file",
                               description="Draw each logged metric against the step, one line per run.")
    plot.add_argument("log_dirs", nargs="+", help="run directories (with metrics.csv), metrics.csv files, or "
                                                  "directories above runs (lightning_logs)")
    plot.add_argument("-o", "--output", default="metrics.png", help="output file; .png, .svg, .pdf or .html "
                                                                    "(default: metrics.png)")
    plot.add_argument("-m", "--metrics", default=None, help="comma-separated metrics to plot (default: all)")
    args = parser.parse_args(argv)
    from ember.plot import plot_metrics

    try:
        path = plot_metrics(args.log_dirs, args.output, args.metrics.split(",") if args.metrics else None)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as err:
        parser.exit(2, f"ember plot: {err}\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
