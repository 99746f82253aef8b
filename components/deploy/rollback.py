"""Rollback: point `champion` back at an earlier version and serve that version.

"Previous" needs no extra history: every version that was ever deployed has a Triton
version folder numbered like its registered version (the newest KEEP_VERSIONS are kept),
so the previous champion is the highest deployed version below the current champion.
The alias moves first (refused, changing nothing, if the registry lacks the version);
if the version then fails to serve, the alias moves back and the old version serves on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from anomalyops.components.registry.champion import champion_version, set_champion
from anomalyops.serving.contract.names import check_name
from anomalyops.serving.triton.model_control import ModelControlError, switch_version
from anomalyops.serving.triton.repository import model_lock, versions


class RollbackError(ValueError):
    """Nothing to roll back to, or the version cannot be served; nothing was changed."""


@dataclass
class Rollback:
    variant: str
    previous: str | None  # champion before the rollback
    champion: str  # champion now, and the Triton version served
    repository: str
    loaded_by: str  # the Triton URL that loaded it, or "" (served from the next start)

    def to_dict(self) -> dict:
        return asdict(self)


def previous_version(model_dir: Path, champion: str | None) -> int:
    """The highest deployed version below CHAMPION (how "the previous champion" is known)."""
    if champion is None:
        raise RollbackError(f"{model_dir.name} has no champion; pass --to")
    older = [v for v in versions(model_dir) if v < int(champion)]
    if not older:
        raise RollbackError(f"{model_dir}: no deployed version older than champion v{champion}")
    return older[-1]


def rollback(tracking_uri: str, variant: str, repository: str | Path, to: int | None = None,
             triton_url: str = "") -> Rollback:  # fmt: skip
    """Make version TO (default: the previous champion) champion and serve it."""
    model_dir = Path(repository).resolve() / check_name(variant)
    if not (model_dir / "config.pbtxt").is_file():
        raise RollbackError(f"{model_dir}: no such model in the Triton repository")
    with model_lock(model_dir.parent, variant):
        current = champion_version(tracking_uri, variant)
        target = to if to is not None else previous_version(model_dir, current)
        if not (model_dir / str(target)).is_dir():
            raise RollbackError(
                f"{model_dir / str(target)}: missing; deployed versions kept: {versions(model_dir)}"
            )
        set_champion(tracking_uri, variant, str(target))
        try:
            switch_version(model_dir.parent, variant, target, triton_url or None)
        except ModelControlError as error:
            if current is not None:
                set_champion(tracking_uri, variant, current)
            raise RollbackError(f"{error}; champion alias left at v{current}") from None
    return Rollback(variant, current, str(target), str(model_dir.parent), triton_url)
