"""A dataset's card: what its folder says of itself in ``avscene-dataset.json`` (synthetic or real, a description).

The card travels from the dataset reader into the store (attribute ``dataset_card``) and from there into every run
that reads the store, so a figure or a ``vadd check`` verdict always says whether it came from SYNTHETIC data. A
folder without a card is taken as not marked synthetic (every real dataset, e.g. TAU, has none).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avscene.errors import ManifestError

CARD_FILE = "avscene-dataset.json"


@dataclass(frozen=True)
class DatasetCard:
    """``synthetic``: the media were generated, not recorded; ``description``: one line for people."""

    synthetic: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetCard":
        return cls(bool(data.get("synthetic", False)), str(data.get("description", "")))

    def write(self, folder: Path) -> Path:
        path = Path(folder) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, folder: Path) -> "DatasetCard":
        """The card in ``folder``, or the default (not synthetic, no description) when it has none.

        Raises:
            ManifestError: the card is not a JSON object with a boolean ``synthetic``.
        """
        path = Path(folder) / CARD_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ManifestError(f"{path}: not a readable JSON dataset card: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("synthetic", False), bool):
            raise ManifestError(f'{path}: a dataset card is a JSON object like {{"synthetic": true, "description": "..."}}')
        return cls.from_dict(data)

    def label(self) -> str:
        """``SYNTHETIC`` or ``real`` (as far as the card says) for one-line reports."""
        return "SYNTHETIC" if self.synthetic else "not marked synthetic"
