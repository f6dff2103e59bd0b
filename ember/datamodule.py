"""LightningDataModule: the dataloaders and data preparation of a project in one class."""

from __future__ import annotations

from typing import Any

from ember.module import _HyperparametersMixin


class LightningDataModule(_HyperparametersMixin):
    """Subclass this and define ``train_dataloader`` (and ``val_``/``test_``/``predict_dataloader`` as needed)."""

    name: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Any = None
        self._log_hyperparams = True

    def prepare_data(self) -> None:
        """Download or write data to disk once per node (no state assignment here)."""

    def setup(self, stage: str) -> None:
        """Build datasets for ``stage`` ("fit", "validate", "test" or "predict"); runs in every process."""

    def teardown(self, stage: str) -> None:
        """Clean up after ``stage``."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def on_exception(self, exception: BaseException) -> None:
        """Called when a run ends with an exception."""

    @classmethod
    def from_datasets(cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None,
                      predict_dataset: Any = None, batch_size: int = 1, num_workers: int = 0,
                      **dataloader_kwargs: Any) -> LightningDataModule:
        """A datamodule whose dataloaders wrap the given datasets (training data shuffled)."""
        from torch.utils.data import DataLoader

        def make(dataset: Any, shuffle: bool) -> Any:
            return lambda: DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                                      **dataloader_kwargs)

        datamodule = cls()
        for name, dataset, shuffle in (("train_dataloader", train_dataset, True), ("val_dataloader", val_dataset, False),
                                       ("test_dataloader", test_dataset, False),
                                       ("predict_dataloader", predict_dataset, False)):
            if dataset is not None:
                setattr(datamodule, name, make(dataset, shuffle))
        return datamodule
